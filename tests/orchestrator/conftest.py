"""The orchestrator suite: real nats-server per test, doubles for registry, runners, gateway."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from natsfix import nats_server, queue_settings
from orch_doubles import Harness

from nox.queue import QueueSettings

__all__ = ["Harness", "harness", "nats_server", "queue_settings"]

# the pipeline tests reuse the ingestor suite's chain helpers
sys.path.append(str(Path(__file__).resolve().parent.parent / "ingestor"))


@pytest.fixture
async def harness(queue_settings: QueueSettings) -> AsyncIterator[Harness]:
    h = Harness(queue_settings)
    await h.start_gateway()
    try:
        yield h
    finally:
        await h.close()
