"""BufferedPublisher: order kept across a NATS outage, bounded buffer, callbacks."""

from __future__ import annotations

import asyncio

import pytest
from natsfix import open_queue
from prometheus_client import CollectorRegistry

from nox.queue import (
    BufferedPublisher,
    NatsServerProcess,
    PendingTransaction,
    PublishBufferFull,
    PublishResult,
    QueueConnection,
    QueueMetrics,
    QueueSettings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def tx(i: int) -> bytes:
    return i.to_bytes(32, "big")


async def stored_payloads(conn: QueueConnection) -> list[bytes]:
    info = await conn.js.stream_info(conn.settings.stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        out.append(bytes((await conn.js.get_msg(conn.settings.stream, seq)).data or b""))
    return out


async def test_order_is_kept_across_an_outage(
    queue_settings: QueueSettings, nats_server: NatsServerProcess
) -> None:
    registry = CollectorRegistry()
    metrics = QueueMetrics(registry)
    async with open_queue(queue_settings) as conn:
        pub = BufferedPublisher(conn, max_buffered=10, metrics=metrics)
        reconnected = asyncio.Event()

        async def on_reconnected() -> None:
            reconnected.set()

        conn.on_reconnected(on_reconnected)
        first = await pub.publish(1, tx(0), b"m0")
        assert first is not None
        assert not first.duplicate
        await asyncio.to_thread(nats_server.stop)
        for i in (1, 2, 3):
            assert await pub.publish(1, tx(i), f"m{i}".encode()) is None
        assert pub.pending == 3
        assert registry.get_sample_value("nox_queue_publish_buffered") == 3
        await asyncio.to_thread(nats_server.start)
        await asyncio.wait_for(reconnected.wait(), timeout=20)
        # No flusher runs: the next publish goes out after the buffered ones, in order.
        last = await pub.publish(1, tx(4), b"m4")
        assert last is not None
        assert pub.pending == 0
        assert await stored_payloads(conn) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        assert last.seq == 5
    assert registry.get_sample_value("nox_queue_published_total", {"outcome": "stored"}) == 5
    assert registry.get_sample_value("nox_queue_publish_buffered") == 0


async def test_full_buffer_refuses_and_the_flusher_drains_on_reconnect(
    queue_settings: QueueSettings, nats_server: NatsServerProcess
) -> None:
    done: list[tuple[str, int]] = []

    def on_published(item: PendingTransaction, result: PublishResult) -> None:
        done.append((item.tx_hash, result.seq))

    async with open_queue(queue_settings) as conn:
        pub = BufferedPublisher(
            conn, max_buffered=3, retry_interval=30.0, on_published=on_published
        )
        pub.start()
        try:
            await asyncio.to_thread(nats_server.stop)
            for i in range(3):
                assert await pub.publish(3, tx(i), f"m{i}".encode()) is None
            assert pub.full
            with pytest.raises(PublishBufferFull):
                await pub.publish(3, tx(99), b"refused")
            await asyncio.to_thread(nats_server.start)
            # retry_interval is 30 s: only the reconnect callback can wake the flusher in time.
            await asyncio.wait_for(pub.drain(), timeout=20)
            assert await stored_payloads(conn) == [b"m0", b"m1", b"m2"]
        finally:
            await pub.stop()
    assert done == [("0x" + tx(i).hex(), i + 1) for i in range(3)]


async def test_republishing_after_a_lost_reply_is_deduplicated(
    queue_settings: QueueSettings,
) -> None:
    """A retry of a message JetStream already stored (reply lost) is not stored again."""
    async with open_queue(queue_settings) as conn:
        pub = BufferedPublisher(conn)
        a = await pub.publish(1, tx(7), b"same")
        b = await pub.publish(1, tx(7), b"same")
        assert await stored_payloads(conn) == [b"same"]
    assert a is not None
    assert b is not None
    assert b.duplicate
    assert b.seq == a.seq
