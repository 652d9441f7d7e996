"""The reliability harness, short form: transfers through the multi-process devnet while
runners, the orchestrator, a KMS node and the gateway are SIGKILLed and started again; every
result decrypts to the reference model's value, none is missing, none is stored twice.

Size: NOX_CHAOS_TASKS (default 120) transfers sent over NOX_CHAOS_SECONDS (default 60) with
NOX_CHAOS_FAULTS (default 5) faults; the long form is tests/chaos/run.py. The counts are in
the assertion message and in the devnet's state directory (chaos.json).
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest
from chaos_harness import KINDS, run_chaos, schedule, target_kind

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

NAMES = ["kms-1", "kms-2", "kms-3", "gateway", "orchestrator", "ingestor", "runner-1", "runner-2"]


def test_schedule_is_seeded_bounded_and_hits_every_kind() -> None:
    plan = schedule(NAMES, faults=7, seconds=100, seed=3)
    assert plan == schedule(NAMES, faults=7, seconds=100, seed=3)
    assert plan != schedule(NAMES, faults=7, seconds=100, seed=4)
    assert len(plan) == 7
    assert {target_kind(f.target) for f in plan} == set(KINDS)
    assert "ingestor" not in {f.target for f in plan}
    assert [f.at for f in plan] == sorted(f.at for f in plan)
    assert all(f.at >= 10 for f in plan)
    assert all(f.at + f.down <= 75 for f in plan)
    assert all(f.down <= 2 for f in plan if f.target == "gateway")
    kms = [f for f in plan if target_kind(f.target) == "kms"]
    for a, b in itertools.pairwise(kms):  # never two KMS nodes down in the schedule
        assert a.at + a.down <= b.at


@pytest.mark.timeout(900)
async def test_chaos_every_result_right_after_kills_and_restarts(tmp_path: Path) -> None:
    tasks = int(os.environ.get("NOX_CHAOS_TASKS", "120"))
    seconds = float(os.environ.get("NOX_CHAOS_SECONDS", "60"))
    faults = int(os.environ.get("NOX_CHAOS_FAULTS", "5"))
    outcome = await run_chaos(
        tmp_path / "devnet", tasks=tasks, seconds=seconds, faults=faults, seed=0, say=print
    )
    counts = f"{outcome.summary()} (counts in {outcome.path})"
    report = outcome.report
    assert report.tasks_sent == tasks, counts
    assert report.tasks_stored == tasks, counts
    assert report.missing == [], counts
    assert report.duplicated == [], counts
    assert report.reverted == [], counts
    assert report.wrong == [], counts
    assert report.values_checked == tasks + 2 * max(2, min(40, tasks // 5)), counts
    kinds = {target_kind(name) for name in outcome.log.kills}
    assert kinds == set(KINDS), counts  # every kind was really killed
    assert outcome.log.exit_statuses == [-signal.SIGKILL] * faults, counts
    assert sum(outcome.log.restarts.values()) == faults, counts
    assert outcome.ok, counts
