"""bench/oversize.py runs in a tiny size: both gateway processes start, every oversized
request is refused, and the figures have their documented shape (no timing or memory bound
is asserted: the machines are shared and noisy)."""

from __future__ import annotations

import pytest
from test_bench_scripts import figures, run_json

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_oversize_refuses_every_request_and_prints_the_figures() -> None:
    result = run_json("oversize.py", "--concurrency", "3", "--size-mib", "2", "--rounds", "1")
    assert (result["concurrency"], result["rounds"]) == (3, 1)
    assert result["request_bytes"] > 2 * 1024 * 1024
    for side in ("before", "after"):
        figures(result[side], {"idle_rss_mb", "peak_rss_mb", "peak_above_idle_mb", "seconds"})
        assert result[side]["outcomes"] == {"RESOURCE_EXHAUSTED": 3}, side
    figures(result, {"ratio"})
    assert result["goal_above_idle_mb"] == 300
    assert isinstance(result["goal_met"], bool)
