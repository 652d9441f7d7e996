"""nats-server restarted mid-run: nothing lost, every message consumed once after acks."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from natsfix import open_queue
from prometheus_client import CollectorRegistry

from nox.queue import (
    BufferedPublisher,
    Lease,
    NatsServerProcess,
    QueueSettings,
    QueueUnavailable,
    TxConsumer,
)
from nox.queue.metrics import QueueMetrics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def tx(i: int) -> bytes:
    return i.to_bytes(32, "big")


async def fetch_retrying(c: TxConsumer[bytes], wait: float = 0.3) -> list[Lease[bytes]]:
    try:
        return await c.fetch(batch=4, wait=wait)
    except QueueUnavailable:
        await asyncio.sleep(0.1)
        return []


async def consume_until_idle(c: TxConsumer[bytes], acked: Counter[int], idle_rounds: int) -> None:
    idle = 0
    while idle < idle_rounds:
        leases = await fetch_retrying(c)
        idle = 0 if leases else idle + 1
        for lease in leases:
            while True:
                try:
                    await lease.ack()
                    break
                except QueueUnavailable:
                    await asyncio.sleep(0.1)
            acked[lease.stream_seq] += 1


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_server_restart_mid_run_loses_nothing(
    queue_settings: QueueSettings, nats_server: NatsServerProcess, kill: bool
) -> None:
    total = 30
    acked: Counter[int] = Counter()
    async with open_queue(queue_settings) as pub_conn, open_queue(queue_settings) as sub_conn:
        pub = BufferedPublisher(pub_conn, retry_interval=0.2)
        pub.start()
        c = TxConsumer(sub_conn, decode=bytes, metrics=QueueMetrics(CollectorRegistry()))
        await c.start()
        try:
            for i in range(10):
                assert await pub.publish(1, tx(i), f"m{i}".encode()) is not None
            # Some consumed and acked, two held unacked across the restart.
            first = await c.fetch(batch=6, wait=2)
            for lease in first[:4]:
                await lease.ack()
                acked[lease.stream_seq] += 1

            await asyncio.to_thread(nats_server.stop, kill=kill)
            buffered = [await pub.publish(1, tx(i), f"m{i}".encode()) for i in range(10, 20)]
            assert buffered == [None] * 10
            with pytest.raises(QueueUnavailable):
                await c.fetch(wait=0.2)
            await asyncio.to_thread(nats_server.start)

            for i in range(20, total):
                await pub.publish(1, tx(i), f"m{i}".encode())
            await asyncio.wait_for(pub.drain(), timeout=30)
            # Idle for several ack_waits, so the two held leases are redelivered and acked.
            await consume_until_idle(c, acked, idle_rounds=int(queue_settings.ack_wait * 8))
        finally:
            await pub.stop()
            await c.close()
        info = await pub_conn.js.stream_info(queue_settings.stream)
        payloads = [
            bytes((await pub_conn.js.get_msg(queue_settings.stream, s)).data or b"")
            for s in range(1, total + 1)
        ]
    assert info.state.messages == total  # no duplicates from the buffered retries
    assert payloads == [f"m{i}".encode() for i in range(total)]  # in publish order
    assert set(acked) == set(range(1, total + 1))  # nothing lost
    if not kill:
        # A clean restart keeps every ack: no acked message comes back.
        assert all(n == 1 for n in acked.values()), acked
