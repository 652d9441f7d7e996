"""The local nats-server: free port, restart on the same port and store, clean stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from natsfix import open_queue

from nox.queue import NatsServerFailed, NatsServerProcess, QueueSettings, publish_transaction

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_restart_keeps_port_streams_and_messages(
    nats_server: NatsServerProcess, queue_settings: QueueSettings
) -> None:
    port = nats_server.port
    async with open_queue(queue_settings) as conn:
        stored = await publish_transaction(conn, 1, b"\x01" * 32, b"kept")
    await asyncio.to_thread(nats_server.restart)
    assert nats_server.port == port
    assert nats_server.running
    async with open_queue(queue_settings) as conn:
        again = await publish_transaction(conn, 1, b"\x01" * 32, b"kept")
        info = await conn.js.stream_info(queue_settings.stream)
    assert again.duplicate
    assert again.seq == stored.seq
    assert info.state.messages == 1


def test_two_servers_get_different_free_ports(tmp_path: Path) -> None:
    with NatsServerProcess(tmp_path / "a") as a, NatsServerProcess(tmp_path / "b") as b:
        assert a.port != b.port
        assert a.running
        assert b.running
    assert not a.running
    assert not b.running


def test_own_state_dir_is_removed_on_close() -> None:
    server = NatsServerProcess()
    server.start()
    state = server.state_dir
    assert (state / "store").is_dir()
    server.close()
    assert not state.exists()


def test_port_is_unknown_before_the_first_start(tmp_path: Path) -> None:
    with pytest.raises(NatsServerFailed):
        _ = NatsServerProcess(tmp_path).port


def test_a_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    with pytest.raises(NatsServerFailed):
        NatsServerProcess(tmp_path, binary="/bin/false").start()
