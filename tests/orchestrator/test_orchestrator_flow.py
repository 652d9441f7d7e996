"""Orchestrator end to end with a real nats-server: assign, lease, store, ack, redundancy."""

from __future__ import annotations

import asyncio

import pytest
from natsfix import open_queue, read_parked
from orch_doubles import Harness, publish, tx_message

from nox.crypto.hashing import keccak256
from nox.errors import NoxError
from nox.v1 import task_pb2

pytestmark = pytest.mark.integration
S = task_pb2.TaskState


async def _consumer_info(conn, h: Harness):  # type: ignore[no-untyped-def]
    return await conn.js.consumer_info(h.queue.stream, h.queue.durable)


async def test_assignment_signed_result_stored_once_ack_only_after_store(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator()
    runner = h.runner(node)
    async with open_queue(h.queue) as conn:
        msg = tx_message(h.deployment, 1, ops=2)
        task_id = await publish(conn, h.ingestor, h.domain, msg, int(h.clock()))
        await runner.heartbeat(capacity=2)
        [claimed] = await runner.claim(max_tasks=2, wait=5)

        # signed by the orchestrator for this runner (checked by the runner double), and
        # exactly the transaction's task: ingestor envelope byte for byte, handles, lease
        a = claimed.assignment
        assert claimed.signer == node.address
        assert a.task_id == task_id == keccak256(f"31337:0x{msg.transaction_hash.hex()}".encode())
        assert a.runner_address == runner.key.address
        assert a.transaction.payload == msg.SerializeToString()
        first, second = msg.operations
        # c1 is produced by op 0, so only a and b are fetched from the gateway
        assert list(a.input_handles) == list(first.input_handles)
        assert list(a.output_handles) == [*first.output_handles, *second.output_handles]
        assert a.attempt == 1
        assert a.redundancy == 1
        assert a.lease_expires_at == a.assigned_at + 30
        assert a.limits.max_operations == node.settings.limits.max_operations

        # the gateway holds the store: the message must stay unacknowledged meanwhile
        h.gateway.gate = asyncio.Event()
        submitting = asyncio.create_task(runner.submit(claimed))
        await asyncio.wait_for(h.gateway.entered.wait(), 10)
        info = await _consumer_info(conn, h)
        assert info.num_ack_pending == 1
        assert node.scheduler is not None
        assert node.scheduler.status(task_id).state == S.TASK_STATE_SUBMITTED
        h.gateway.gate.set()
        assert await asyncio.wait_for(submitting, 10) == S.TASK_STATE_STORED

        info = await _consumer_info(conn, h)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
        assert h.gateway.calls == [task_id]
        assert set(h.gateway.stored) == set(a.output_handles)
        # a repeated submission is answered with the final state and stores nothing new
        assert await runner.submit(claimed) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
        status = node.scheduler.status(task_id)
        assert status.state == S.TASK_STATE_STORED
        assert status.attempts == 1
        assert list(status.runner_addresses) == [runner.key.address]


async def test_lease_expiry_reassigns_to_another_runner(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(lease_seconds=2)
    slow, fast = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 2), int(h.clock())
        )
        await slow.heartbeat()
        [lost] = await slow.claim(wait=5)
        await fast.heartbeat()
        # nothing for the second runner until the first lease ends, then the same task
        [again] = await fast.claim(wait=8)
        assert again.assignment.task_id == task_id
        assert again.assignment.attempt == 2
        assert again.assignment.runner_address == fast.key.address
        # the first runner is told to abandon it, and its late result is refused
        assert task_id in await slow.heartbeat(active=[task_id])
        with pytest.raises(NoxError) as late:
            await slow.submit(lost)
        assert late.value.reason == "LEASE_NOT_HELD"
        assert await fast.submit(again) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
        info = await _consumer_info(conn, h)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0


async def test_redundancy_two_with_a_wrong_runner_is_not_stored(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(redundancy=2)
    good, bad = h.runner(node), h.runner(node, value=b"wrong")
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 3), int(h.clock())
        )
        await good.heartbeat()
        await bad.heartbeat()
        [c1] = await good.claim(wait=5)
        [c2] = await bad.claim(wait=5)
        assert c1.assignment.task_id == c2.assignment.task_id == task_id
        assert c1.assignment.redundancy == 2
        assert await good.submit(c1) == S.TASK_STATE_SUBMITTED
        assert await bad.submit(c2) == S.TASK_STATE_FAILED
        assert h.gateway.calls == []
        assert h.gateway.stored == {}
        assert node.scheduler is not None
        status = node.scheduler.status(task_id)
        assert status.failure.reason == "RESULT_DISAGREEMENT"
        assert {r.flagged for r in node.scheduler.runners.values()} == {1}
        [parked] = await read_parked(conn, 1)
        assert parked.reason == "RESULT_DISAGREEMENT"
        assert bad.key.address.hex() in parked.detail


async def test_redundancy_two_agreeing_is_stored_with_both_executions(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(redundancy=2)
    r1, r2 = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 4), int(h.clock())
        )
        await r1.heartbeat()
        await r2.heartbeat()
        [c1] = await r1.claim(wait=5)
        assert await r1.claim(wait=0) == []  # never two slots of one task on one runner
        [c2] = await r2.claim(wait=5)
        assert await r1.submit(c1) == S.TASK_STATE_SUBMITTED
        assert h.gateway.calls == []
        assert await r2.submit(c2) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]


async def test_result_checked_against_its_assignment(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator()
    owner, other = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        await publish(conn, h.ingestor, h.domain, tx_message(h.deployment, 5), int(h.clock()))
        await owner.heartbeat()
        await other.heartbeat()
        [claimed] = await owner.claim(wait=5)
        # another (registered) runner presenting the owner's assignment
        with pytest.raises(NoxError) as stolen:
            await other.submit(claimed)
        assert stolen.value.reason == "LEASE_NOT_HELD"
        # outputs that are not exactly the assignment's handles
        outputs = owner.outputs(claimed)
        del outputs.ciphertexts[-1]
        with pytest.raises(NoxError) as partial:
            await owner.submit(claimed, outputs=outputs)
        assert partial.value.reason == "OUTPUTS_MISMATCH"
        assert h.gateway.calls == []
        assert await owner.submit(claimed) == S.TASK_STATE_STORED


async def test_unregistered_runner_is_refused(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator()
    runner = h.runner(node)
    h.directory.remove(runner.key.address)
    with pytest.raises(NoxError) as refused:
        await runner.heartbeat()
    assert refused.value.reason == "SIGNER_NOT_REGISTERED"


async def test_runner_failures_transient_retried_permanent_parked(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator()
    r1, r2 = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 6), int(h.clock())
        )
        await r1.heartbeat()
        await r2.heartbeat()
        [c1] = await r1.claim(wait=5)
        transient = task_pb2.TaskFailure(
            reason="KMS_QUORUM_NOT_REACHED", code=14, message="x", retryable=True
        )
        assert await r1.submit(c1, failure=transient) == S.TASK_STATE_QUEUED
        [c2] = await r2.claim(wait=5)
        assert c2.assignment.task_id == task_id
        # unavailability of the moment (a restarting gateway, a KMS quorum) spends no attempt
        assert c2.assignment.attempt == 1
        permanent = task_pb2.TaskFailure(reason="TYPE_MISMATCH", code=3, message="types")
        assert await r2.submit(c2, failure=permanent) == S.TASK_STATE_FAILED
        [parked] = await read_parked(conn, 1)
        assert parked.reason == "TYPE_MISMATCH"
        assert h.gateway.calls == []


async def test_runner_loss_reassigns(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(runner_lost_after=1.5)
    lost, alive = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 7), int(h.clock())
        )
        await lost.heartbeat()
        [first] = await lost.claim(wait=5)
        # `alive` keeps heartbeating; `lost` goes silent and its lease is revoked
        for _ in range(10):
            await alive.heartbeat()
            claimed = await alive.claim(wait=1)
            if claimed:
                break
        else:
            pytest.fail("task was not reassigned after the runner went silent")
        assert claimed[0].assignment.task_id == task_id
        assert claimed[0].assignment.attempt == 2
        assert await alive.submit(claimed[0]) == S.TASK_STATE_STORED
        assert first.assignment.attempt == 1
