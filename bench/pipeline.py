"""Pipeline benchmark: tasks/s and latency from NATS publish to stored result.

    .venv/bin/python bench/pipeline.py [--tasks 100] [--runners 1,2] [--postgres [URL]]
                                       [--rate 0] [--timeout 600] [--json]

The network (bench/_network.py): nats-server, anvil with NoxRegistry, simulated TDX
registrations for every role, a 2-of-3 KMS (three KmsService gRPC servers) and the gateway
(SQLite file store, or a fresh PostgreSQL schema with `--postgres`) in this process, one
`noxctl serve orchestrator` process and 1..N `noxctl serve runner` processes.

For each runner count: `--tasks` confidential transfers (3 inputs, 3 outputs, uint64; the
inputs made by the gateway's EncryptInput beforehand) are signed by the registered ingestor
key as TransactionMessages and published to JetStream back to back
(`nox.queue.publish_transaction`), or paced at `--rate` tasks/s (latency without the
queueing of a burst). A task's latency runs from just before its publish to
the commit of its outputs in the gateway's store; tasks/s is the count over the time from
the first publish to the last commit. A short warm-up (one task per runner slot, not
counted) runs first for each count so registration and connection set-up are not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import DEFAULT_PG_URL, cpu_seconds, percentile
from _network import Network, Task, network

from nox.queue import connect, publish_transaction
from nox.rpc.logging import configure_logging


async def run_batch(
    net: Network, tasks: list[Task], seconds: float, rate: float = 0.0
) -> dict[str, Any]:
    """Publish `tasks` (back to back, or `rate` per second when > 0), wait until all are
    stored, return the figures."""
    published: dict[bytes, float] = {}
    conn = await connect(net.queue)
    cpu_before = cpu_seconds()
    try:
        start = time.perf_counter()
        for i, task in enumerate(tasks):
            if rate > 0:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            published[task.task_id] = time.perf_counter()
            await publish_transaction(conn, task.chain_id, task.tx_hash, task.envelope)
        await net.wait_stored([t.task_id for t in tasks], seconds)
        cpu_after = cpu_seconds()
    finally:
        await conn.close()
    stored = net.store.stored_at
    latencies = [(stored[t] - published[t]) * 1000 for t in published]
    elapsed = max(stored[t] for t in published) - start
    return {
        "tasks": len(tasks),
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(len(tasks) / elapsed, 2),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        # where the CPU went: milliseconds of CPU per task, per process
        "cpu_ms_per_task": {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / len(tasks), 1)
            for name in sorted(cpu_after)
        },
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: dict[str, Any] = {}
    postgres = args.postgres
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    log("starting the network (nats-server, anvil, KMS, gateway, orchestrator)...")
    async with network(postgres_url=postgres) as net:
        for count in args.runners:
            log(f"{count} runner process(es): starting, warming up...")
            net.ensure_runners(count)
            warm = await net.make_tasks(max(1, count * net.runner_capacity))
            await run_batch(net, warm, args.timeout)
            tasks = await net.make_tasks(args.tasks)
            log(f"{count} runner process(es): {args.tasks} tasks...")
            figures = await run_batch(net, tasks, args.timeout, args.rate)
            results[str(count)] = figures
            if not args.json:
                print(
                    f"runners={count}: {figures['tasks_per_s']:.1f} tasks/s over "
                    f"{figures['tasks']} tasks ({figures['seconds']:.2f} s); latency "
                    f"p50 {figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, "
                    f"p99 {figures['p99_ms']:.0f} ms",
                    flush=True,
                )
                cpu = ", ".join(f"{k} {v:.0f}" for k, v in figures["cpu_ms_per_task"].items())
                print(f"  CPU ms per task: {cpu}", flush=True)
    return {
        "tasks": args.tasks,
        "store": "postgresql" if postgres else "sqlite",
        "rate": args.rate or "burst",
        "runners": results,
    }


def _runner_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 1 or c > 6 for c in counts):
        raise argparse.ArgumentTypeError("runner counts between 1 and 6, comma-separated")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="measured tasks per runner count")
    parser.add_argument("--runners", type=_runner_counts, default=[1, 2], help="e.g. 1,2")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_PG_URL,
        default=None,
        metavar="URL",
        help=f"gateway store in a fresh PostgreSQL schema (default URL {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a batch may take before failing"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publish this many tasks per second (default 0: all at once, a burst)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--log-level", default="warning", help="this process's log level")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")

    # Ctrl-C (even where a non-interactive shell started us with SIGINT ignored) and SIGTERM
    # cancel the run, so the network's clean-up stops every process it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # stdout carries only the figures (nox.queue logs through structlog's defaults otherwise)
    configure_logging(json=False, level=args.log_level, stream=sys.stderr)
    try:
        out = asyncio.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    except TimeoutError:
        print(f"not every task was stored within --timeout {args.timeout} s", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
