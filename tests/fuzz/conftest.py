"""Fixtures of the bad-input campaign: one network per module (see fuzz_net.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzz_net import FuzzNet, start, stop
from fuzz_support import LoopThread


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def net(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzNet]:
    store = tmp_path_factory.mktemp("fuzz-gateway") / "gateway.sqlite3"
    network = start(loop, f"sqlite:///{store}")
    try:
        yield network
    finally:
        stop(network)
