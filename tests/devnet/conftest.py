"""The `devnet` fixture: one running devnet per test module (it takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devnet_support import RunningDevnet


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    running = RunningDevnet(tmp_path_factory.mktemp("devnet"))
    running.start()
    try:
        yield running
    finally:
        running.close()
