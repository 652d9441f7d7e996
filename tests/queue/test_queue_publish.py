"""Publishing transactions: stream set-up, message-id deduplication, errors while NATS is down."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from eth_hash.backends.pycryptodome import keccak256 as reference_keccak
from natsfix import open_queue

from nox.queue import (
    NatsServerProcess,
    PublishResult,
    QueueConnection,
    QueueMessageTooLarge,
    QueueSettings,
    QueueUnavailable,
    StreamConfigConflict,
    ensure_streams,
    publish_transaction,
    transaction_msg_id,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TX_A = bytes.fromhex("11" * 32)
TX_B = bytes.fromhex("22" * 32)


async def test_same_transaction_published_twice_is_stored_once(
    queue_settings: QueueSettings,
) -> None:
    async with open_queue(queue_settings) as conn:
        first = await publish_transaction(conn, 31337, TX_A, b"payload")
        again = await publish_transaction(conn, 31337, "0x" + TX_A.hex().upper(), b"payload")
        info = await conn.js.stream_info(queue_settings.stream)
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert info.state.messages == 1
    expected = "0x" + reference_keccak(f"31337:0x{TX_A.hex()}".encode()).hex()
    assert first.msg_id == expected


async def test_same_tx_hash_on_two_chains_is_two_messages(queue_settings: QueueSettings) -> None:
    async with open_queue(queue_settings) as conn:
        one = await publish_transaction(conn, 1, TX_A, b"x")
        two = await publish_transaction(conn, 2, TX_A, b"x")
        other = await publish_transaction(conn, 1, TX_B, b"x")
        msg = await conn.js.get_msg(queue_settings.stream, two.seq)
    assert not (one.duplicate)
    assert not (two.duplicate)
    assert not (other.duplicate)
    assert len({one.seq, two.seq, other.seq}) == 3
    assert msg.subject == "nox.tx.2"
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == transaction_msg_id(2, TX_A)
    assert msg.headers["Nox-Tx-Hash"] == "0x" + TX_A.hex()


async def test_ensure_streams_is_idempotent_and_applies_new_settings(
    queue_settings: QueueSettings,
) -> None:
    async with open_queue(queue_settings) as conn:
        await publish_transaction(conn, 1, TX_A, b"kept")
        await ensure_streams(conn)
        changed = dataclasses.replace(queue_settings, duplicate_window=42.0)
        async with open_queue(changed) as conn2:
            info = await conn2.js.stream_info(queue_settings.stream)
            dlq = await conn2.js.stream_info(queue_settings.dlq_stream)
    assert info.config.duplicate_window == pytest.approx(42.0)
    assert info.state.messages == 1  # the update kept the stored message
    assert info.config.storage == "file"
    assert dlq.config.subjects == ["nox.dlq.*"]


async def test_a_stream_that_cannot_be_updated_is_a_typed_conflict(
    queue_settings: QueueSettings,
) -> None:
    from nats.js import api

    async with open_queue(queue_settings) as conn:
        await conn.js.delete_stream(queue_settings.stream)
        await conn.js.add_stream(
            name=queue_settings.stream,
            subjects=[queue_settings.tx_subjects],
            storage=api.StorageType.MEMORY,
        )
        with pytest.raises(StreamConfigConflict):
            await ensure_streams(conn)


async def test_oversized_message_is_refused_before_sending(queue_settings: QueueSettings) -> None:
    async with open_queue(queue_settings, max_msg_bytes=1024) as conn:
        with pytest.raises(QueueMessageTooLarge):
            await publish_transaction(conn, 1, TX_A, b"x" * 1025)
        info = await conn.js.stream_info(queue_settings.stream)
    assert info.state.messages == 0


async def test_publishing_while_nats_is_down_raises_unavailable(
    queue_settings: QueueSettings, nats_server: NatsServerProcess
) -> None:
    async with open_queue(queue_settings) as conn:
        await asyncio.to_thread(nats_server.stop)
        with pytest.raises(QueueUnavailable):
            await publish_transaction(conn, 1, TX_A, b"x")
        await asyncio.to_thread(nats_server.start)
        result = await _publish_when_back(conn, TX_A)
    assert not result.duplicate


async def _publish_when_back(conn: QueueConnection, tx: bytes) -> PublishResult:
    for _ in range(200):
        try:
            return await publish_transaction(conn, 1, tx, b"x")
        except QueueUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("NATS did not come back")


async def test_connecting_to_no_server_is_unavailable(queue_settings: QueueSettings) -> None:
    from nox.queue import connect

    down = dataclasses.replace(
        queue_settings, servers=("nats://127.0.0.1:1",), initial_connect_timeout=0.5
    )
    with pytest.raises(QueueUnavailable):
        await connect(down)
