"""bench/e2e.py runs the whole multi-process network in a tiny size and checks its results.

The script starts `noxctl devnet --multi-process` (anvil, nats-server, three KMS nodes, the
gateway on PostgreSQL, orchestrator, ingestor, a runner), sends ConfidentialToken transfers
from the contract call, waits until each task is stored, decrypts every balance and every
transferred amount and compares them with the Python model. The test checks the exit
status, that every process it started is gone, that the script's own correctness check saw
every transfer stored once with every value right, and the shape of the JSON the issue
names. No timing is asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bench_pipeline import _processes_mentioning
from test_bench_scripts import PG_URL, is_figure

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def test_e2e_bench_checks_every_value_and_prints_the_figures(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "e2e.py"),
         "--transfers", "12", "--pairs", "4", "--runners", "1", "--postgres", PG_URL,
         "--floor-seconds", "0.5", "--timeout", "180", "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    figures = json.loads(out)
    for key in ("tasks_per_s", "p50_ms", "p99_ms", "floor_tasks_per_s", "efficiency"):
        assert is_figure(figures[key]), key
        assert figures[key] > 0, key
    assert figures["efficiency"] == pytest.approx(
        figures["tasks_per_s"] / figures["floor_tasks_per_s"], rel=0.01
    )
    run = figures["runs"]["1"]
    assert run["transfers"] == 12
    assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
    check = run["check"]
    # the warm-up (one transfer per pair) and the measured transfers, each stored once
    assert check["tasks_sent"] == check["tasks_stored"] == 4 + 12
    assert check["missing"] == check["duplicated"] == check["reverted"] == []
    assert check["wrong"] == []
    assert check["values_checked"] == 8 + 4 + 12  # every balance and every transferred amount
    assert figures["store"] == "postgresql"
    assert {"gateway", "orchestrator", "ingestor", "runner"} <= set(run["cpu_ms_per_task"])
    assert _processes_mentioning(str(tmp_path)) == []  # nothing it started is left running
