"""Chain -> ingestor -> JetStream -> orchestrator -> runner double -> gateway double.

The embedded EVM emits real NoxCompute events; the ingestor and the orchestrator are the real
ones, on a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from ingest_support import Chain, drain, make_chain, make_ingestor
from natsfix import open_queue, read_parked
from orch_doubles import FakeRunner, Harness

from nox.chain.contracts import to_bytes20
from nox.crypto.keys import EnclaveKey
from nox.ingestor import CursorStore
from nox.orchestrator.directory import Web3CanonicalChain
from nox.orchestrator.tasks import task_id_for
from nox.queue import QueueSettings
from nox.v1 import common_pb2, task_pb2

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
S = task_pb2.TaskState


@pytest.fixture
def chain() -> Chain:
    return make_chain()


@pytest.fixture
async def pipeline(queue_settings: QueueSettings, chain: Chain) -> AsyncIterator[Harness]:
    deployment = common_pb2.Deployment(
        chain_id=chain.backend.chain_id,
        registry_address=chain.registry_address,
        compute_address=chain.compute_address,
        acl_address=to_bytes20(chain.deployment.acl),
    )
    h = Harness(queue_settings, deployment)
    await h.start_gateway()
    try:
        yield h
    finally:
        await h.close()


def _store(chain: Chain) -> CursorStore:
    return CursorStore(
        sa.create_engine("sqlite://"),
        chain_id=chain.backend.chain_id,
        compute_address=chain.compute_address,
    )


async def _work(runner: FakeRunner) -> list[bytes]:
    done: list[bytes] = []
    await runner.heartbeat(operators=range(19))
    for _ in range(20):
        claimed = await runner.claim(max_tasks=4, wait=1)
        if not claimed and done:
            return done
        for c in claimed:
            assert await runner.submit(c) == S.TASK_STATE_STORED
            done.append(c.assignment.task_id)
    return done


async def test_same_block_read_twice_has_one_execution_effect(
    pipeline: Harness, chain: Chain
) -> None:
    h = pipeline
    receipts = [chain.encrypt(v)[1] for v in (5, 6)]
    expected = [task_id_for(chain.backend.chain_id, bytes(r["transactionHash"])) for r in receipts]
    async with open_queue(h.queue) as conn:
        first = make_ingestor(chain, conn, _store(chain), h.ingestor)
        await drain(first)
        # the same blocks read again by an ingestor that lost its cursor
        second = make_ingestor(chain, conn, _store(chain), h.ingestor)
        await drain(second)
    node = await h.orchestrator()
    done = await _work(h.runner(node))
    assert sorted(done) == sorted(expected)
    assert sorted(h.gateway.calls) == sorted(expected)  # each transaction stored once


async def test_a_transaction_under_both_its_ids_is_stored_once(
    pipeline: Harness, chain: Chain
) -> None:
    """A second ingestor that does not (yet) know the first as a peer republishes the same
    transaction under its payload id: the orchestrator sees one task, the gateway stores it
    once, and both messages end acknowledged, none parked."""
    h = pipeline
    _, receipt = chain.encrypt(7)
    task_id = task_id_for(chain.backend.chain_id, bytes(receipt["transactionHash"]))
    other = h.directory.add(EnclaveKey.generate(), common_pb2.ROLE_INGESTOR)
    async with open_queue(h.queue) as conn:
        await drain(make_ingestor(chain, conn, _store(chain), h.ingestor))
        second = make_ingestor(chain, conn, _store(chain), other)  # no authorize_peer
        await drain(second)
        assert second.publisher.republished == 1
        info = await conn.js.stream_info(h.queue.stream)
        assert info.state.messages == 2
        node = await h.orchestrator()
        assert await _work(h.runner(node)) == [task_id]
        assert h.gateway.calls == [task_id]
        for _ in range(100):  # the copy's delivery is settled once the task is stored
            consumer = await conn.js.consumer_info(h.queue.stream, h.queue.durable)
            if consumer.num_ack_pending == 0 and consumer.num_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert consumer.num_ack_pending == 0
        assert consumer.num_pending == 0
        dlq = await conn.js.stream_info(h.queue.dlq_stream)
        assert dlq.state.messages == 0
    assert h.gateway.calls == [task_id]


async def test_orphaned_transaction_is_withdrawn(pipeline: Harness, chain: Chain) -> None:
    h = pipeline
    async with open_queue(h.queue) as conn:
        ingestor = make_ingestor(chain, conn, _store(chain), h.ingestor)
        await drain(ingestor)
        fork = chain.snapshot()
        _, orphan = chain.encrypt(11)
        await drain(ingestor)  # published from a block about to be reorganized away
        chain.revert(fork)
        _, kept = chain.encrypt(22)
        await drain(ingestor)
        node = await h.orchestrator(canonical=Web3CanonicalChain(chain.backend.w3))
        done = await _work(h.runner(node))
        kept_id = task_id_for(chain.backend.chain_id, bytes(kept["transactionHash"]))
        orphan_id = task_id_for(chain.backend.chain_id, bytes(orphan["transactionHash"]))
        assert done == [kept_id]
        assert h.gateway.calls == [kept_id]
        assert node.scheduler is not None
        status = node.scheduler.status(orphan_id)
        assert status.state == S.TASK_STATE_WITHDRAWN
        assert status.failure.reason == "TRANSACTION_ORPHANED"
        [parked] = await read_parked(conn, 1)
        assert parked.reason == "TRANSACTION_ORPHANED"
