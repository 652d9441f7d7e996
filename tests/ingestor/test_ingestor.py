"""The ingestor against the embedded EVM and a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from ingest_support import Chain, drain, make_ingestor
from natsfix import open_queue
from sqlalchemy.engine import Engine

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.errors import PermissionDenied
from nox.ingestor import CursorStore
from nox.ingestor.exceptions import CursorMissing
from nox.queue import NatsServerProcess, QueueConnection, QueueSettings, transaction_msg_id
from nox.v1 import task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

pytestmark = pytest.mark.integration


class NoRecord:
    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        return None


async def stream_messages(conn: QueueConnection) -> list[tuple[dict[str, str], SignedEnvelope]]:
    """Every message in the tx stream, in order (an ephemeral consumer; no acks needed)."""
    info = await conn.js.stream_info(conn.settings.stream)
    count = info.state.messages
    if count == 0:
        return []
    sub = await conn.js.pull_subscribe(conn.settings.tx_subjects, stream=conn.settings.stream)
    try:
        msgs = await sub.fetch(batch=count, timeout=5)
    finally:
        await sub.unsubscribe()
    return [(dict(m.headers or {}), SignedEnvelope.FromString(m.data)) for m in msgs]


def store_for(engine: Engine, chain: Chain) -> CursorStore:
    return CursorStore(
        engine, chain_id=chain.backend.chain_id, compute_address=chain.compute_address
    )


async def test_one_signed_message_per_transaction(
    chain: Chain, queue_settings: QueueSettings
) -> None:
    key = EnclaveKey.generate()
    a, r1 = chain.encrypt(5)
    b, r2 = chain.encrypt(-3, type_code=36 + 0)  # int8: the word is sign-extended
    c, r3 = chain.add(a, a)
    engine = sa.create_engine("sqlite://")
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store_for(engine, chain), key)
        await drain(ing)
        got = await stream_messages(conn)
    domain = Domain(chain.backend.chain_id, chain.registry_address)
    assert len(got) == 3
    receipts = [r1, r2, r3]
    for (headers, env), receipt in zip(got, receipts, strict=True):
        v = verify_envelope(
            env, task_pb2.TransactionMessage, domain=domain, audience=chain.compute_address,
            now=int(chain.backend.now()), replay=NoRecord(), max_ttl=8 * 86_400,
            expected_signer=key.address,
        )  # fmt: skip
        msg = v.message
        tx_hash = bytes(receipt["transactionHash"])
        assert msg.transaction_hash == tx_hash
        assert headers["Nats-Msg-Id"] == transaction_msg_id(chain.backend.chain_id, tx_hash)
        assert msg.block_number == receipt["blockNumber"]
        assert msg.block_hash == bytes(receipt["blockHash"])
        block = chain.backend.w3.eth.get_block(receipt["blockNumber"])
        assert msg.block_timestamp == block["timestamp"]
        assert msg.compute_address == chain.compute_address
        ops = chain.compute.operations(receipt)
        mine = [(o.log_index, o.operator, o.caller, list(o.output_handles)) for o in msg.operations]
        assert mine == [(e.log_index, e.operator, e.caller, e.outputs) for e in ops]
    first = task_pb2.TransactionMessage.FromString(got[0][1].payload).operations[0]
    assert first.plaintext == (5).to_bytes(32, "big")
    assert not first.input_handles
    second = task_pb2.TransactionMessage.FromString(got[1][1].payload).operations[0]
    assert second.plaintext == b"\xfd"  # -3 as one byte of two's complement
    third = task_pb2.TransactionMessage.FromString(got[2][1].payload).operations[0]
    assert list(third.input_handles) == [a, a]
    assert not third.plaintext
    assert list(third.output_handles) == [c]
    assert b  # made by the second transaction


async def test_confirmations_hold_back_recent_blocks(
    chain: Chain, queue_settings: QueueSettings
) -> None:
    engine = sa.create_engine("sqlite://")
    chain.encrypt(1)
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate(),
                            confirmations=2)  # fmt: skip
        await drain(ing)
        assert await stream_messages(conn) == []
        chain.backend.advance_time(1)  # one block on top: still one short
        await drain(ing)
        assert await stream_messages(conn) == []
        chain.backend.advance_time(1)
        await drain(ing)
        assert len(await stream_messages(conn)) == 1


async def test_same_block_read_twice_is_stored_once(
    chain: Chain, queue_settings: QueueSettings, engine: Engine
) -> None:
    for v in range(3):
        chain.encrypt(v)
    async with open_queue(queue_settings) as conn:
        first = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate())
        await drain(first)
        # a second reader with its own (fresh) cursor reads the same blocks again; the first
        # is an active ingestor in the registry, so its messages count as the second's own
        other = store_for(sa.create_engine("sqlite://"), chain)

        def registered(signer: bytes, now: int) -> None:
            if signer != first.key.address:
                raise PermissionDenied("not an ingestor")

        second = make_ingestor(chain, conn, other, EnclaveKey.generate(), registered)
        await drain(second)
        assert second.metrics.transactions._value.get() == 3  # handed over again ...
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 3  # ... and deduplicated by message id
        assert second.queue_metrics.squatted._value.get() == 0


async def test_a_duplicate_signed_by_an_unknown_key_is_republished(
    chain: Chain, queue_settings: QueueSettings, engine: Engine
) -> None:
    """The same transaction stored first under its id by a key that is not an active
    ingestor would be refused by the orchestrators: the ingestor publishes its own again."""
    chain.encrypt(1)
    async with open_queue(queue_settings) as conn:
        rogue = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate())
        await drain(rogue)
        other = store_for(sa.create_engine("sqlite://"), chain)
        real = make_ingestor(chain, conn, other, EnclaveKey.generate())
        await drain(real)
        assert real.queue_metrics.squatted._value.get() == 1
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 2  # its own copy, under its payload id


async def test_cursor_survives_restart(
    chain: Chain, queue_settings: QueueSettings, engine: Engine
) -> None:
    chain.encrypt(1)
    chain.encrypt(2)
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate())
        await drain(ing)
        assert ing.cursor is not None
        stopped_at = ing.cursor.next_block
        # a new process: no initial block, the stored cursor is where it resumes
        again = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate(),
                              initial_block=None)  # fmt: skip
        assert again.load().next_block == stopped_at
        chain.encrypt(3)
        await drain(again)
        assert again.metrics.transactions._value.get() == 1  # only the new transaction
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 3


async def test_refuses_to_start_without_cursor_or_initial_block(
    chain: Chain, queue_settings: QueueSettings, engine: Engine
) -> None:
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate(),
                            initial_block=None)  # fmt: skip
        with pytest.raises(CursorMissing):
            ing.load()


async def test_nats_down_buffers_pauses_and_loses_nothing(
    chain: Chain, queue_settings: QueueSettings, nats_server: NatsServerProcess
) -> None:
    engine = sa.create_engine("sqlite://")
    store = store_for(engine, chain)
    chain.encrypt(1)
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store, EnclaveKey.generate())
        await drain(ing)
        before = store.load()
        assert before is not None
        chain.encrypt(2)
        chain.encrypt(3)
        await asyncio.to_thread(nats_server.stop)
        stop = asyncio.Event()
        running = asyncio.create_task(ing.run(stop))
        for _ in range(100):
            if ing.publisher.pending == 2:
                break
            await asyncio.sleep(0.05)
        assert ing.publisher.pending == 2  # buffered while NATS is down ...
        current = store.load()
        assert current is not None
        assert current.next_block == before.next_block
        await asyncio.to_thread(nats_server.start)
        for _ in range(200):
            after = store.load()
            if after is not None and after.next_block > before.next_block:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(running, 10)
        assert ing.publisher.pending == 0
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 3


async def test_reorg_rewinds_and_rereads(chain: Chain, queue_settings: QueueSettings) -> None:
    engine = sa.create_engine("sqlite://")
    store = store_for(engine, chain)
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store, EnclaveKey.generate())
        await drain(ing)
        fork = chain.snapshot()
        orphan_handle, orphan = chain.encrypt(11)
        await drain(ing)
        chain.revert(fork)
        kept_handle, kept = chain.encrypt(22)
        chain.backend.advance_time(1)
        assert kept["blockNumber"] == orphan["blockNumber"]
        assert kept["blockHash"] != orphan["blockHash"]
        await drain(ing)
        assert ing.metrics.reorgs._value.get() == 1
        got = await stream_messages(conn)
        hashes = [task_pb2.TransactionMessage.FromString(e.payload).block_hash for _, e in got]
        # the orphaned transaction's message was published before the reorg; the
        # transaction of the new canonical block is published after it
        assert hashes == [bytes(orphan["blockHash"]), bytes(kept["blockHash"])]
        assert orphan_handle != kept_handle


async def test_reingest_deduplicates_and_recovers_a_lost_message(
    chain: Chain, queue_settings: QueueSettings, engine: Engine
) -> None:
    for v in range(3):
        chain.encrypt(v)
    async with open_queue(queue_settings) as conn:
        ing = make_ingestor(chain, conn, store_for(engine, chain), EnclaveKey.generate())
        await drain(ing)
        cursor = ing.store.load()
        await conn.js.delete_msg(queue_settings.stream, 2)  # the second message is lost
        head = chain.backend.w3.eth.block_number
        again = make_ingestor(chain, conn, store_for(engine, chain), ing.key)
        assert await again.reingest(0, head) == 3
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 3  # two deduplicated, the lost one published again
        assert again.queue_metrics.squatted._value.get() == 1
        assert again.store.load() == cursor  # the cursor is not touched
