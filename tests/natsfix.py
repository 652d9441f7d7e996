"""A real nats-server with JetStream for any test suite (`nats_server`, `queue_settings`).

The server runs with authentication on (nox.queue.auth): `queue_settings` connects as the
`admin` role (everything allowed, for the queue layer's own tests and helpers);
`role_settings(nats_server, role)` gives the `ingestor` or `orchestrator` user's settings.

Import the fixtures into a suite's conftest.py:

    from natsfix import nats_server, queue_settings  # noqa: F401

Each test gets its own server on a free port with its store in the test's tmp_path. The
`NatsServerProcess` it yields can be stopped and started again mid-test on the same port and
store (`stop()`, `start()`, `restart()`); call them through `asyncio.to_thread` from async
tests so the event loop keeps running while the server comes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nox.queue import (
    ParkedMessage,
    QueueConnection,
    QueueSettings,
    connect,
    ensure_streams,
)
from nox.queue.server import NatsServerProcess

__all__ = ["nats_server", "open_queue", "queue_settings", "read_parked", "role_settings"]

# time-outs short enough for tests
TEST_TIMEOUTS: dict[str, object] = {
    "ack_wait": 1.0,
    "max_deliver": 3,
    "publish_timeout": 2.0,
    "connect_timeout": 1.0,
    "initial_connect_timeout": 5.0,
    "reconnect_base_delay": 0.05,
    "reconnect_max_delay": 0.5,
    "ping_interval": 1,
    "max_outstanding_pings": 2,
}


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A nats-server (-js) on a free port, store under tmp_path; stopped after the test."""
    server = NatsServerProcess(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def queue_settings(nats_server: NatsServerProcess) -> QueueSettings:
    """Queue settings pointing at `nats_server` as its admin, with short time-outs."""
    return nats_server.settings("admin", **TEST_TIMEOUTS)


def role_settings(
    nats_server: NatsServerProcess, role: str, base: QueueSettings | None = None
) -> QueueSettings:
    """`base` (default: the test time-outs) as `role` ("ingestor", "orchestrator")."""
    if base is None:
        return nats_server.settings(role, **TEST_TIMEOUTS)
    return nats_server.user(role).settings(dataclasses.replace(base, servers=(nats_server.url,)))


@asynccontextmanager
async def open_queue(
    settings: QueueSettings, **overrides: object
) -> AsyncIterator[QueueConnection]:
    """A connection with both streams set up; closed on exit."""
    if overrides:
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    conn = await connect(settings)
    try:
        await ensure_streams(conn)
        yield conn
    finally:
        await conn.close()


async def read_parked(conn: QueueConnection, count: int, wait: float = 5.0) -> list[ParkedMessage]:
    """The first `count` messages of the dead-letter stream (fails if fewer arrive)."""
    sub = await conn.js.pull_subscribe(conn.settings.dlq_subjects, stream=conn.settings.dlq_stream)
    try:
        msgs = await sub.fetch(batch=count, timeout=wait)
        return [ParkedMessage.from_msg(m) for m in msgs]
    finally:
        await sub.unsubscribe()
