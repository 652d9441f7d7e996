"""The shared durable consumer: sharing, redelivery, in-progress acks, poison parking."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from natsfix import open_queue, read_parked
from prometheus_client import CollectorRegistry

from nox.errors import InvalidArgument, Unavailable
from nox.queue import (
    REASON_MAX_DELIVERIES,
    REASON_UNDECODABLE,
    ConsumerNotStarted,
    Lease,
    LeaseSettled,
    QueueMetrics,
    QueueSettings,
    TxConsumer,
    ensure_consumer,
    publish_transaction,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def tx(i: int) -> bytes:
    return i.to_bytes(32, "big")


def identity(data: bytes) -> bytes:
    return data


@asynccontextmanager
async def consumer(
    settings: QueueSettings,
    decode: Callable[[bytes], bytes] = identity,
    registry: CollectorRegistry | None = None,
    retry_delay: float = 1.0,
) -> AsyncIterator[TxConsumer[bytes]]:
    async with open_queue(settings) as conn:
        metrics = QueueMetrics(registry if registry is not None else CollectorRegistry())
        c = TxConsumer(
            conn,
            decode=decode,
            metrics=metrics,
            clock=lambda: 1_700_000_000.0,
            retry_delay=retry_delay,
        )
        await c.start()
        try:
            yield c
        finally:
            await c.close()


async def publish_range(settings: QueueSettings, count: int, chain_id: int = 7) -> None:
    async with open_queue(settings) as conn:
        for i in range(count):
            await publish_transaction(conn, chain_id, tx(i), f"msg-{i}".encode())


async def drain(c: TxConsumer[bytes], idle_rounds: int = 2) -> list[Lease[bytes]]:
    """Fetch until `idle_rounds` consecutive fetches come back empty."""
    got: list[Lease[bytes]] = []
    idle = 0
    while idle < idle_rounds:
        batch = await c.fetch(batch=5, wait=0.3)
        idle = 0 if batch else idle + 1
        got.extend(batch)
    return got


async def test_two_instances_share_the_messages_without_duplicates(
    queue_settings: QueueSettings,
) -> None:
    await publish_range(queue_settings, 40)
    seen: dict[str, list[bytes]] = {"a": [], "b": []}

    async def work(name: str, c: TxConsumer[bytes]) -> None:
        idle = 0
        while idle < 3:
            leases = await c.fetch(batch=3, wait=0.3)
            idle = 0 if leases else idle + 1
            for lease in leases:
                seen[name].append(lease.value)
                await lease.ack()
                await asyncio.sleep(0)  # let the other instance in

    async with consumer(queue_settings) as a, consumer(queue_settings) as b:
        await asyncio.gather(work("a", a), work("b", b))
        assert await a.fetch(wait=1.5) == []  # nothing comes back after ack_wait
    everything = seen["a"] + seen["b"]
    assert sorted(everything) == sorted(f"msg-{i}".encode() for i in range(40))
    assert len(set(everything)) == 40
    assert seen["a"], "instance a took part"
    assert seen["b"], "instance b took part"


async def test_unacked_message_of_a_killed_instance_goes_to_the_other(
    queue_settings: QueueSettings,
) -> None:
    await publish_range(queue_settings, 1)
    registry = CollectorRegistry()
    async with consumer(queue_settings, registry=registry) as survivor:
        async with open_queue(queue_settings) as conn:
            doomed = TxConsumer(conn, decode=identity, metrics=QueueMetrics(CollectorRegistry()))
            await doomed.start()
            (taken,) = await doomed.fetch(wait=2)
            assert taken.delivery_count == 1
        # `doomed`'s connection is closed without an ack: after ack_wait it is redelivered.
        redelivered: list[Lease[bytes]] = []
        while not redelivered:
            redelivered = await survivor.fetch(wait=1)
        (lease,) = redelivered
        assert lease.value == b"msg-0"
        assert lease.stream_seq == taken.stream_seq
        assert lease.delivery_count == 2
        await lease.ack()
        assert await survivor.fetch(wait=1.5) == []
    assert registry.get_sample_value("nox_queue_deliveries_total", {"redelivered": "true"}) == 1
    assert registry.get_sample_value("nox_queue_deliveries_total", {"redelivered": "false"}) is None


async def test_in_progress_acks_keep_the_message_past_ack_wait(
    queue_settings: QueueSettings,
) -> None:
    await publish_range(queue_settings, 1)
    async with consumer(queue_settings) as holder, consumer(queue_settings) as other:
        (lease,) = await holder.fetch(wait=2)
        stolen: list[Lease[bytes]] = []
        async with lease.keep_alive(interval=queue_settings.ack_wait / 4):
            # Three ack_waits during which the other instance keeps asking for work.
            for _ in range(6):
                stolen += await other.fetch(wait=queue_settings.ack_wait / 2)
        await lease.ack()
        stolen += await other.fetch(wait=1.5)
    assert stolen == []
    assert lease.settled == "ack"


async def test_without_in_progress_acks_the_message_is_redelivered(
    queue_settings: QueueSettings,
) -> None:
    """The control for the test above: same timing, no keep-alive."""
    await publish_range(queue_settings, 1)
    async with consumer(queue_settings) as holder, consumer(queue_settings) as other:
        (lease,) = await holder.fetch(wait=2)
        stolen: list[Lease[bytes]] = []
        for _ in range(6):
            stolen += await other.fetch(wait=queue_settings.ack_wait / 2)
            if stolen:
                break
    assert [s.stream_seq for s in stolen] == [lease.stream_seq]


async def test_poison_message_is_parked_with_its_reason_and_the_rest_flows(
    queue_settings: QueueSettings,
) -> None:
    def decode(data: bytes) -> bytes:
        if data.startswith(b"garbage"):
            raise InvalidArgument("not a TransactionMessage")
        return data

    registry = CollectorRegistry()
    async with open_queue(queue_settings) as conn:
        await publish_transaction(conn, 5, tx(1), b"msg-1")
        bad = await publish_transaction(conn, 5, tx(2), b"garbage\x00\xff")
        await publish_transaction(conn, 5, tx(3), b"msg-3")
        async with consumer(queue_settings, decode, registry) as c:
            leases = await drain(c)
            for lease in leases:
                await lease.ack()
        parked = await read_parked(conn, 1)
        dlq_info = await conn.js.stream_info(queue_settings.dlq_stream)
    assert [lease.value for lease in leases] == [b"msg-1", b"msg-3"]
    (p,) = parked
    assert dlq_info.state.messages == 1
    assert p.reason == REASON_UNDECODABLE
    assert "INVALID_ARGUMENT" in p.detail
    assert p.data == b"garbage\x00\xff"
    assert p.original_subject == "nox.tx.5"
    assert p.original_stream == queue_settings.stream
    assert p.stream_seq == bad.seq
    assert p.delivery_count == 1
    assert p.consumer == queue_settings.durable
    assert p.parked_at == 1_700_000_000
    assert p.original_msg_id == bad.msg_id
    assert p.headers["Nox-Tx-Hash"] == "0x" + tx(2).hex()
    assert registry.get_sample_value("nox_queue_parked_total", {"reason": "UNDECODABLE"}) == 1


async def test_message_failing_max_deliver_times_is_parked(queue_settings: QueueSettings) -> None:
    registry = CollectorRegistry()
    await publish_range(queue_settings, 1, chain_id=9)
    attempts: list[int] = []
    async with consumer(queue_settings, registry=registry) as c:
        while True:
            leases = await c.fetch(wait=1)
            if not leases:
                break
            (lease,) = leases
            attempts.append(lease.delivery_count)
            await lease.nak()
        async with open_queue(queue_settings) as conn:
            (p,) = await read_parked(conn, 1)
    assert attempts == list(range(1, queue_settings.max_deliver + 1))
    assert lease.settled == f"park:{REASON_MAX_DELIVERIES}"
    assert p.reason == REASON_MAX_DELIVERIES
    assert p.delivery_count == queue_settings.max_deliver
    assert p.original_subject == "nox.tx.9"
    assert p.data == b"msg-0"
    parked = {"reason": "MAX_DELIVERIES_EXCEEDED"}
    assert registry.get_sample_value("nox_queue_parked_total", parked) == 1


async def test_message_whose_holders_keep_dying_is_parked_not_redelivered_forever(
    queue_settings: QueueSettings,
) -> None:
    await publish_range(queue_settings, 1)
    async with consumer(queue_settings) as c:
        deliveries = []
        while True:
            leases = await c.fetch(wait=queue_settings.ack_wait * 2)
            if not leases:
                break
            deliveries.append(leases[0].delivery_count)  # never settled: the holder "dies"
        async with open_queue(queue_settings) as conn:
            (p,) = await read_parked(conn, 1)
    assert deliveries == list(range(1, queue_settings.max_deliver + 1))
    assert p.reason == REASON_MAX_DELIVERIES
    assert p.delivery_count == queue_settings.max_deliver + 1


async def test_transient_decode_failure_is_retried_then_succeeds(
    queue_settings: QueueSettings,
) -> None:
    calls: list[bytes] = []

    def flaky(data: bytes) -> bytes:
        calls.append(data)
        if len(calls) == 1:
            raise Unavailable("registry unreachable")
        return data

    await publish_range(queue_settings, 1)
    async with consumer(queue_settings, flaky, retry_delay=0.1) as c:
        got: list[Lease[bytes]] = []
        while not got:
            got = await c.fetch(wait=1)
        (lease,) = got
        await lease.ack()
    assert lease.delivery_count == 2
    assert calls == [b"msg-0", b"msg-0"]


async def test_a_lease_settles_once(queue_settings: QueueSettings) -> None:
    await publish_range(queue_settings, 1)
    async with consumer(queue_settings) as c:
        (lease,) = await c.fetch(wait=2)
        await lease.ack()
        for settle in (lease.ack, lease.nak, lease.term, lease.progress):
            with pytest.raises(LeaseSettled):
                await settle()
        with pytest.raises(LeaseSettled):
            await lease.park("WHATEVER")
        assert "msg-0" not in repr(lease)


async def test_consumer_setup_is_idempotent_and_follows_the_settings(
    queue_settings: QueueSettings,
) -> None:
    async with open_queue(queue_settings) as conn:
        await ensure_consumer(conn)
        await ensure_consumer(conn)
        longer = dataclasses.replace(queue_settings, ack_wait=7.0, max_deliver=4)
        async with open_queue(longer) as conn2:
            await ensure_consumer(conn2)
            info = await conn2.js.consumer_info(queue_settings.stream, queue_settings.durable)
    assert info.config.ack_wait == pytest.approx(7.0)
    assert info.config.max_deliver == 5  # one delivery more than the attempts, to park
    assert info.config.ack_policy == "explicit"
    assert info.config.filter_subject == "nox.tx.*"


async def test_fetch_before_start_is_refused(queue_settings: QueueSettings) -> None:
    async with open_queue(queue_settings) as conn:
        c = TxConsumer(conn, decode=identity, metrics=QueueMetrics(CollectorRegistry()))
        with pytest.raises(ConsumerNotStarted):
            await c.fetch()
