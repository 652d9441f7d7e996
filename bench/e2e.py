"""End-to-end benchmark: confidential transfers from the contract call to the stored result.

    .venv/bin/python bench/e2e.py [--transfers 300] [--pairs 50] [--runners 1,2]
                                  [--capacity 4] [--sqlite | --postgres URL] [--rate 0]
                                  [--floor-seconds 5] [--timeout 600] [--json]

The network is `noxctl devnet --multi-process` (`nox.devnet.processes.ProcessDevnet`): anvil,
nats-server, three KMS nodes (2-of-3), the gateway (PostgreSQL by default, in a scratch
schema), the orchestrator, the ingestor and 1..N runners, each service its own `noxctl serve`
process with simulated TDX registrations and every message signed and verified. One devnet
per runner count.

The workload (`nox.devnet.load.TokenLoad`): ConfidentialToken transfers inside `--pairs`
disjoint pairs of funded accounts, each a transaction whose `Operation` event asks for one
`transfer` (3 inputs: the encrypted amount and both balances; 3 outputs). The amounts are
encrypted through the gateway and the transactions signed beforehand; then `--transfers`
transactions are sent back to back (or paced at `--rate` per second). A transfer's latency
runs from its block being mined (anvil mines each transaction as it arrives) to its task's
row appearing in the gateway's database (polled every 20 ms, so up to 20 ms late); tasks/s
is the count over the time from the first send to the last store. A warm-up of one transfer
per pair runs first. Afterwards every balance and every transferred amount is decrypted as
its holder and compared with the Python reference model: a run with a wrong value fails.

The crypto floor (`bench/_floor.py`) is the cryptography one transfer needs, back to back
in this process on one core; efficiency = tasks/s over the floor's tasks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _floor import measure_floor
from _measure import DEFAULT_PG_URL, cpu_seconds, percentile, postgres_schema

from nox.devnet.config import DevnetSettings
from nox.devnet.load import TokenLoad
from nox.devnet.processes import ProcessDevnet
from nox.rpc.logging import configure_logging


async def run_one(args: argparse.Namespace, runners: int, log: Any) -> dict[str, Any]:
    """One devnet with `runners` runner processes: warm up, measure, verify."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nox-e2e-")))
        store_url = None if args.sqlite else stack.enter_context(postgres_schema(args.postgres))
        settings = DevnetSettings(
            state_dir=tmp / "devnet",
            runners=runners,
            runner_capacity=args.capacity,
            store_url=store_url,
            ready_timeout=120.0,
        )
        log(f"{runners} runner(s): starting the multi-process devnet")
        async with ProcessDevnet(settings) as net:
            assert net.chain is not None
            async with net.client() as nox:
                load = await TokenLoad.prepare(
                    net, nox, pairs=args.pairs, transfers=args.pairs + args.transfers, say=log
                )
                try:
                    log(f"{runners} runner(s): warm-up ({args.pairs} transfers)")
                    await load.send(args.pairs)
                    await load.wait_stored(args.timeout)
                    log(f"{runners} runner(s): {args.transfers} transfers")
                    before = cpu_seconds()
                    sent = await load.send(args.transfers, rate=args.rate)
                    stored = await load.wait_stored(args.timeout)
                    after = cpu_seconds()
                    log(f"{runners} runner(s): decrypting and checking every value")
                    report = await load.verify()
                finally:
                    load.close()
    latencies = [(stored[s.task_id] - s.sent_at) * 1000 for s in sent]
    elapsed = max(stored[s.task_id] for s in sent) - sent[0].sent_at
    sent_for = sent[-1].sent_at - sent[0].sent_at
    return {
        "runners": runners,
        "transfers": len(sent),
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(len(sent) / elapsed, 2),
        "sent_per_s": round(len(sent) / sent_for, 1) if sent_for > 0 else None,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "cpu_ms_per_task": {
            name: round((after[name] - before.get(name, 0.0)) * 1000 / len(sent), 2)
            for name in sorted(after)
        },
        "check": report.to_json() | {"summary": report.summary()},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    log(f"crypto floor: {args.floor_seconds} s on one core")
    floor = await asyncio.to_thread(measure_floor, args.floor_seconds)
    runs = {}
    for count in args.runners:
        figures = await run_one(args, count, log)
        figures["efficiency"] = round(figures["tasks_per_s"] / floor.tasks_per_s, 3)
        runs[str(count)] = figures
        if not args.json:
            print(
                f"runners={count}: {figures['tasks_per_s']:.1f} transfers/s over "
                f"{figures['transfers']} ({figures['seconds']:.2f} s); latency p50 "
                f"{figures['p50_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, p99 "
                f"{figures['p99_ms']:.0f} ms; efficiency {figures['efficiency']:.2f}",
                flush=True,
            )
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in figures["cpu_ms_per_task"].items())
            print(f"  CPU ms per transfer: {cpu}", flush=True)
            print(f"  check: {figures['check']['summary']}", flush=True)
    best = max(runs.values(), key=lambda r: r["tasks_per_s"])
    if not args.json:
        print(
            f"crypto floor: {floor.tasks_per_s:.1f} transfers/s on one core "
            f"({floor.ms_per_task:.2f} ms each)",
            flush=True,
        )
    return {
        "tasks_per_s": best["tasks_per_s"],
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "floor_tasks_per_s": round(floor.tasks_per_s, 2),
        "efficiency": best["efficiency"],
        "best_runners": best["runners"],
        "store": "sqlite" if args.sqlite else "postgresql",
        "rate": args.rate or "burst",
        "floor_ms_per_task": round(floor.ms_per_task, 3),
        "floor_breakdown_ms": {k: round(v, 3) for k, v in floor.breakdown_ms.items()},
        "runs": runs,
    }


def _runner_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(c < 1 or c > 2 for c in counts):
        raise argparse.ArgumentTypeError("runner counts 1 or 2, comma-separated (anvil's accounts)")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transfers", type=int, default=300, help="measured transfers per run")
    parser.add_argument("--pairs", type=int, default=50, help="independent account pairs")
    parser.add_argument("--runners", type=_runner_counts, default=[1, 2], help="e.g. 1,2")
    parser.add_argument("--capacity", type=int, default=4, help="tasks each runner runs at once")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--sqlite", action="store_true", help="gateway store in SQLite")
    store.add_argument(
        "--postgres",
        default=DEFAULT_PG_URL,
        metavar="URL",
        help=f"PostgreSQL for the gateway store, in a scratch schema (default {DEFAULT_PG_URL})",
    )
    parser.add_argument("--rate", type=float, default=0.0, help="send at this rate (0: burst)")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="crypto floor run time")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for results")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.transfers < 1 or args.pairs < 1 or args.capacity < 1:
        parser.error("--transfers, --pairs and --capacity must be at least 1")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    configure_logging(json=False, level="warning", stream=sys.stderr)
    try:
        out = asyncio.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process was stopped", file=sys.stderr)
        return 130
    except TimeoutError as exc:
        print(f"not every transfer was stored within --timeout: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    wrong = [r for r in out["runs"].values() if not r["check"]["ok"]]
    if wrong:
        print(f"results are WRONG: {[r['check']['summary'] for r in wrong]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
