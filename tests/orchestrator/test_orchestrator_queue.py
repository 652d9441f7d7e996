"""The shared durable consumer: several instances, a lost instance, poison, NATS restarts."""

from __future__ import annotations

import asyncio
import os

import pytest
from natsfix import open_queue, read_parked
from orch_doubles import FakeRunner, Harness, publish, tx_message

from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.orchestrator import TaskLimitSettings
from nox.queue import NatsServerProcess, publish_transaction
from nox.v1 import task_pb2

pytestmark = pytest.mark.integration
S = task_pb2.TaskState


async def _drained(conn, h: Harness, tries: int = 100) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) until every message of the durable consumer is acknowledged."""
    for _ in range(tries):
        info = await conn.js.consumer_info(h.queue.stream, h.queue.durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"consumer not drained: {info}")


async def _work(runner: FakeRunner, rounds: int = 30) -> list[bytes]:
    """Claim and complete tasks until `rounds` claims came back empty-handed or full."""
    done: list[bytes] = []
    await runner.heartbeat()
    for _ in range(rounds):
        claimed = await runner.claim(max_tasks=2, wait=1)
        if not claimed and done:
            break
        for c in claimed:
            assert await runner.submit(c) == S.TASK_STATE_STORED
            done.append(c.assignment.task_id)
    return done


async def test_two_instances_share_the_durable_consumer(harness: Harness) -> None:
    h = harness
    n1, n2 = await h.orchestrator(), await h.orchestrator()
    r1, r2 = h.runner(n1), h.runner(n2)
    async with open_queue(h.queue) as conn:
        ids = [
            await publish(conn, h.ingestor, h.domain, tx_message(h.deployment, i), int(h.clock()))
            for i in range(10, 18)
        ]
        got1, got2 = await asyncio.gather(_work(r1), _work(r2))
        # every task done exactly once, across both instances
        assert sorted(got1 + got2) == sorted(ids)
        assert sorted(h.gateway.calls) == sorted(ids)
        await _drained(conn, h)


async def test_lost_instance_work_is_finished_by_the_other(harness: Harness) -> None:
    h = harness
    n1, n2 = await h.orchestrator(), await h.orchestrator()
    r1, r2 = h.runner(n1), h.runner(n2)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 20), int(h.clock())
        )
        await r1.heartbeat()
        [held] = await r1.claim(wait=5)
        assert held.assignment.task_id == task_id
        # instance 1 goes away without settling the message (no ack, no nak)
        await n1.stop()
        h.nodes.remove(n1)
        await r2.heartbeat()
        # after ack_wait JetStream redelivers to instance 2, which assigns it afresh
        [again] = await r2.claim(wait=8)
        assert again.assignment.task_id == task_id
        assert again.signer == n2.address
        assert await r2.submit(again) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
        await _drained(conn, h)


async def test_poison_messages_parked_with_reason_and_the_rest_flows(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(limits=TaskLimitSettings(max_operations=4))
    runner = h.runner(node)
    async with open_queue(h.queue) as conn:
        now = int(h.clock())
        # 1: not an envelope at all
        await publish_transaction(conn, h.deployment.chain_id, os.urandom(32), b"\xff garbage")
        # 2: a well-formed transaction signed by a key that is not a registered ingestor
        msg = tx_message(h.deployment, 30)
        forged = sign_envelope(
            EnclaveKey.generate(), msg, domain=h.domain, audience=msg.compute_address, now=now
        )
        await publish_transaction(
            conn, msg.chain_id, msg.transaction_hash, forged.SerializeToString()
        )
        # 3: over the orchestrator's task limits
        big = tx_message(h.deployment, 31, ops=5)
        await publish(conn, h.ingestor, h.domain, big, now)
        # 4: a good one
        good = await publish(conn, h.ingestor, h.domain, tx_message(h.deployment, 32), now)
        done = await _work(runner)
        assert done == [good]
        parked = await read_parked(conn, 3)
        by_seq = {p.stream_seq: p for p in parked}
        assert by_seq[1].reason == "UNDECODABLE"
        assert "MESSAGE_MALFORMED" in by_seq[1].detail
        assert by_seq[2].reason == "UNDECODABLE"
        assert "SIGNER_NOT_REGISTERED" in by_seq[2].detail
        assert by_seq[3].reason == "TASK_LIMIT_EXCEEDED"
        await _drained(conn, h)


async def test_nats_restart_mid_run_loses_nothing(
    harness: Harness, nats_server: NatsServerProcess
) -> None:
    h = harness
    node = await h.orchestrator()
    runner = h.runner(node)
    async with open_queue(h.queue) as conn:
        ids = [
            await publish(conn, h.ingestor, h.domain, tx_message(h.deployment, i), int(h.clock()))
            for i in range(40, 44)
        ]
        await runner.heartbeat()
        [first] = await runner.claim(wait=5)
        await asyncio.to_thread(nats_server.restart)
        # the result is stored; its ack waits for the connection to come back
        assert await runner.submit(first) == S.TASK_STATE_STORED
        rest = await _work(runner)
        assert sorted([first.assignment.task_id, *rest]) == sorted(ids)
        # each task stored once (a task redelivered after the restart may be re-executed,
        # but only if its first result was never stored)
        assert sorted(set(h.gateway.calls)) == sorted(ids)
        await _drained(conn, h)


async def test_task_no_local_runner_can_run_goes_to_another_instance(harness: Harness) -> None:
    h = harness
    n1, n2 = await h.orchestrator(lease_seconds=1), await h.orchestrator()
    adder, encrypter = h.runner(n1), h.runner(n2)
    msg = tx_message(h.deployment, 70, ops=1)
    msg.operations[0].operator = 0  # PlaintextToEncrypted
    del msg.operations[0].input_handles[:]
    msg.operations[0].plaintext = b"\x00" * 32
    async with open_queue(h.queue) as conn:
        task_id = await publish(conn, h.ingestor, h.domain, msg, int(h.clock()))
        await adder.heartbeat(operators=[1])  # instance 1's runner cannot encrypt ...
        assert await adder.claim(wait=1) == []  # ... though instance 1 took the message
        assert n1.scheduler is not None
        assert task_id in n1.scheduler.tasks
        await encrypter.heartbeat(operators=[0, 1])
        [claimed] = await encrypter.claim(wait=10)  # released by 1, taken by 2
        assert claimed.assignment.task_id == task_id
        assert claimed.signer == n2.address
        assert await encrypter.submit(claimed) == S.TASK_STATE_STORED
        await _drained(conn, h)
