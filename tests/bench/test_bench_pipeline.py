"""bench/pipeline.py runs the multi-process pipeline in a tiny size and prints its figures.

The script starts nats-server, anvil, the KMS and gateway, a `serve orchestrator` process and
a `serve runner` process, publishes signed transfers to JetStream and waits until each
task's outputs are stored. The test checks the exit status, that every process it started is
gone, and the shape of the JSON (no timing is asserted: the machines are shared and noisy).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def _processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line or environment contains `marker` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                if marker.encode() in (entry / name).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


def test_pipeline_bench_prints_figures_for_one_runner(tmp_path: Path) -> None:
    # The script's state (and so every process it starts) lives under TMPDIR = tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "pipeline.py"),
         "--tasks", "5", "--runners", "1", "--timeout", "120", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=280)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    figures = json.loads(out)
    assert figures["tasks"] == 5
    assert figures["store"] == "sqlite"
    assert set(figures["runners"]) == {"1"}
    one = figures["runners"]["1"]
    assert one["tasks"] == 5
    for key in ("tasks_per_s", "p50_ms", "p95_ms", "p99_ms"):
        assert isinstance(one[key], float), key
        assert math.isfinite(one[key]), key
        assert one[key] > 0, key
    assert one["p50_ms"] <= one["p95_ms"] <= one["p99_ms"]
    assert _processes_mentioning(str(tmp_path)) == []  # nothing it started is left running
