"""The reliability harness: token transfers through the multi-process devnet while its
processes are killed and started again, then every result checked.

`run_chaos` starts `ProcessDevnet` (anvil, nats-server, a 2-of-3 KMS, the gateway, the
orchestrator, the ingestor, two runners, each a `noxctl serve` child), prepares a
`TokenLoad`, and sends its transfers at a steady rate while a seeded `schedule` of faults
runs: each fault SIGKILLs one child, leaves it down for a while, and starts it again with
the same environment and port (`ProcessDevnet.restart`). When every fault is undone it waits
until every task is stored, then `TokenLoad.verify` decrypts every balance and every
transferred amount through the gateway and the KMS and compares them with the Python
reference model (`TokenModel`), and counts the tasks missing and stored twice.

The targets are those the network must survive losing: the runners, the orchestrator, one
KMS node at a time (the threshold is 2 of 3, so a second node down would stop decryption by
design, not by fault) and the gateway. The chain and NATS are the network's durable
substrate and the ingestor is not yet in the list (see tests/chaos/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nox.devnet.config import DevnetSettings
from nox.devnet.load import LoadReport, TokenLoad
from nox.devnet.processes import ProcessDevnet

__all__ = ["ChaosOutcome", "Fault", "run_chaos", "schedule", "target_kind"]

KINDS = ("runner", "orchestrator", "kms", "gateway")
"""What the harness kills; every schedule has at least one fault of each kind."""


def target_kind(name: str) -> str:
    """`runner-2` -> `runner`, `kms-1` -> `kms`, `gateway` -> `gateway`."""
    return name.split("-")[0]


@dataclass(frozen=True)
class Fault:
    """Kill `target` (SIGKILL) `at` seconds after the load starts; start it again `down`
    seconds later."""

    at: float
    target: str
    down: float


def schedule(
    targets: list[str],
    *,
    faults: int,
    seconds: float,
    seed: int,
    max_down: float = 6.0,
) -> list[Fault]:
    """A seeded list of `faults` faults among `targets` (child names), ordered by time,
    spread over the middle of a `seconds`-long load (the last leaves time to recover).

    Every kind in KINDS present in `targets` is hit at least once when `faults` allows it;
    the gateway stays down at most 2 s (a restart, as an operator's deploy would do). A
    target's own faults and the KMS nodes' faults never overlap in the schedule (at most
    one KMS node down); `run_faults` enforces it again against the real restart times."""
    rng = random.Random(seed)
    by_kind: dict[str, list[str]] = {}
    for name in targets:
        if target_kind(name) in KINDS:
            by_kind.setdefault(target_kind(name), []).append(name)
    chosen = [rng.choice(by_kind[k]) for k in KINDS if k in by_kind][:faults]
    pool = [name for names in by_kind.values() for name in names]
    chosen += [rng.choice(pool) for _ in range(faults - len(chosen))]
    rng.shuffle(chosen)
    start, end = 0.1 * seconds, 0.75 * seconds
    slot = (end - start) / max(1, len(chosen))
    out = []
    for i, name in enumerate(chosen):
        longest = 2.0 if target_kind(name) == "gateway" else max_down
        down = round(rng.uniform(0.5, min(longest, 0.8 * slot) if slot > 1 else 0.5), 2)
        at = round(start + i * slot + rng.uniform(0, max(0.0, slot - down) * 0.5), 2)
        out.append(Fault(at, name, down))
    return out


@dataclass
class FaultLog:
    """What `run_faults` did (the counts the harness prints)."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    """Restarts that exited before ready and were started again (see ProcessDevnet.restart)."""
    exit_statuses: list[int | None] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


async def run_faults(
    net: ProcessDevnet, faults: list[Fault], begin: float, say: Callable[[str], None]
) -> FaultLog:
    """Carry out `faults` (times relative to `begin`, a time.monotonic()); faults of
    different targets may overlap, except that a KMS node is killed only while every other
    KMS node runs."""
    log = FaultLog()
    locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in net.child_names}
    kms_lock = asyncio.Lock()

    async def one(fault: Fault) -> None:
        await asyncio.sleep(max(0.0, begin + fault.at - time.monotonic()))
        is_kms = target_kind(fault.target) == "kms"
        async with locks[fault.target], kms_lock if is_kms else contextlib.nullcontext():
            if is_kms:
                others = [n for n in net.child_names if target_kind(n) == "kms"]
                assert all(net.alive(n) for n in others), "a KMS node is down already"
            pid = net.pid(fault.target)
            t0 = time.monotonic() - begin
            status = await net.kill(fault.target, signal.SIGKILL)
            log.kills[fault.target] += 1
            log.exit_statuses.append(status)
            say(f"chaos: t={t0:6.1f}s SIGKILL {fault.target} (pid {pid}, exit {status})")
            await asyncio.sleep(fault.down)
            crashed = net.crashes(fault.target)
            await net.restart(fault.target)
            log.restarts[fault.target] += 1
            if net.crashes(fault.target) > crashed:
                log.crashes[fault.target] += net.crashes(fault.target) - crashed
            t1 = time.monotonic() - begin
            say(f"chaos: t={t1:6.1f}s {fault.target} back (pid {net.pid(fault.target)})")
            log.events.append({"target": fault.target, "killed_at": round(t0, 2),
                               "back_at": round(t1, 2), "exit": status})  # fmt: skip

    await asyncio.gather(*(one(f) for f in faults))
    return log


@dataclass
class ChaosOutcome:
    """The counts of one chaos run (printed, asserted, written to DIR/chaos.json)."""

    report: LoadReport
    faults: list[Fault]
    log: FaultLog
    seconds: float
    path: Path | None = None

    @property
    def ok(self) -> bool:
        """Every result right, and every scheduled fault really killed and restarted."""
        return (
            self.report.ok
            and sum(self.log.kills.values()) == len(self.faults)
            and sum(self.log.restarts.values()) == len(self.faults)
            and all(s == -signal.SIGKILL for s in self.log.exit_statuses)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "check": self.report.to_json() | {"summary": self.report.summary()},
            "kills": dict(sorted(self.log.kills.items())),
            "restarts": dict(sorted(self.log.restarts.items())),
            "crashed_restarts": dict(sorted(self.log.crashes.items())),
            "kills_by_kind": dict(sorted(Counter(
                {k: sum(v for n, v in self.log.kills.items() if target_kind(n) == k)
                 for k in KINDS}).items())),
            "faults": [asdict(f) for f in self.faults],
            "events": self.log.events,
            "seconds": round(self.seconds, 1),
        }  # fmt: skip

    def summary(self) -> str:
        kills = ", ".join(f"{n} {c}" for n, c in sorted(self.log.kills.items()))
        return (
            f"chaos: {self.report.summary()}; {sum(self.log.kills.values())} SIGKILLs "
            f"({kills}), {sum(self.log.restarts.values())} restarts "
            f"({sum(self.log.crashes.values())} retried after an early exit); "
            f"{self.seconds:.0f} s; ok={self.ok}"
        )


async def run_chaos(
    state_dir: Path,
    *,
    tasks: int,
    seconds: float,
    faults: int,
    seed: int = 0,
    runners: int = 2,
    store_url: str | None = None,
    settle_timeout: float = 300.0,
    say: Callable[[str], None] = lambda m: None,
) -> ChaosOutcome:
    """One chaos run (see the module docstring); the outcome is also in state_dir/chaos.json."""
    settings = DevnetSettings(
        state_dir=state_dir, runners=runners, store_url=store_url, ready_timeout=120.0
    )
    started = time.monotonic()
    net = ProcessDevnet(settings, progress=say)
    async with net:
        assert net.chain is not None
        plan = schedule(net.child_names, faults=faults, seconds=seconds, seed=seed)
        async with net.client() as nox:
            load = await TokenLoad.prepare(
                net, nox, pairs=max(2, min(40, tasks // 5)), transfers=tasks, seed=seed, say=say
            )
            try:
                say(f"chaos: {tasks} transfers over {seconds:.0f} s, {len(plan)} faults")
                begin = time.monotonic()
                _, log = await asyncio.gather(
                    load.send(rate=tasks / seconds), run_faults(net, plan, begin, say)
                )
                say("chaos: every process is back; waiting until every task is stored")
                with contextlib.suppress(TimeoutError):  # verify names what is missing
                    await load.wait_stored(settle_timeout)
                say("chaos: decrypting and checking every value")
                report = await load.verify()
            finally:
                load.close()
        outcome = ChaosOutcome(report, plan, log, time.monotonic() - started)
        outcome.path = state_dir / "chaos.json"
        outcome.path.write_text(json.dumps(outcome.to_json(), indent=2) + "\n")
    return outcome
