"""Tasks that read an earlier transaction's result: held until it is stored, or retried.

A transaction's input may be the output of an earlier transaction still being computed (a
token balance). The orchestrator holding both assigns the reader only once the producer is
stored; a reader whose producer it cannot see (another instance) comes back from its runner
as HANDLE_NOT_FOUND and is retried with back-off until `retry_wait` runs out, then parked.
"""

from __future__ import annotations

import time

import pytest
from natsfix import open_queue, read_parked
from orch_doubles import Harness, handle, publish, tx_message

from nox.orchestrator.dependencies import DependencyTracker
from nox.v1 import task_pb2

S = task_pb2.TaskState


def _reader_of(h: Harness, n: int, producer_output: bytes) -> task_pb2.TransactionMessage:
    """Transaction `n` whose only operation adds `producer_output` to a value of its own."""
    msg = tx_message(h.deployment, n, ops=1)
    del msg.operations[0].input_handles[:]
    msg.operations[0].input_handles.extend([producer_output, handle(1000 * n + 2)])
    return msg


def test_tracker_holds_a_reader_until_its_producers_finish() -> None:
    deps = DependencyTracker()
    assert deps.add(b"A", [b"in-1"], [b"a-out"]) is False
    assert deps.add(b"B", [b"in-2"], [b"b-out"]) is False
    assert deps.add(b"C", [b"a-out", b"b-out"], [b"c-out"]) is True
    assert deps.waiting(b"C")
    assert deps.finish(b"A", [b"a-out"]) == []  # still waits for B
    assert deps.waiting(b"C")
    assert deps.finish(b"B", [b"b-out"]) == [b"C"]
    assert not deps.waiting(b"C")
    # A finished producer is forgotten: a later reader of its output does not wait.
    assert deps.add(b"D", [b"a-out"], [b"d-out"]) is False
    deps.finish(b"C", [b"c-out"])
    deps.finish(b"D", [b"d-out"])
    assert len(deps) == 0


def test_tracker_ignores_a_task_reading_its_own_outputs() -> None:
    deps = DependencyTracker()
    assert deps.add(b"A", [b"x"], [b"a-out"]) is False
    # a redelivered or chained message naming its own output is not its own producer
    assert deps.add(b"A", [b"a-out"], [b"a-out"]) is False


@pytest.mark.integration
async def test_a_reader_is_assigned_only_after_its_producer_is_stored(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator()
    runner = h.runner(node)
    producer_msg = tx_message(h.deployment, 41, ops=1)
    produced = bytes(producer_msg.operations[0].output_handles[0])
    async with open_queue(h.queue) as conn:
        now = int(h.clock())
        producer = await publish(conn, h.ingestor, h.domain, producer_msg, now)
        reader = await publish(conn, h.ingestor, h.domain, _reader_of(h, 42, produced), now)
        await runner.heartbeat()
        first = await runner.claim(max_tasks=2, wait=2)
        # both messages were pulled, but only the producer may run
        assert [c.assignment.task_id for c in first] == [producer]
        assert await runner.claim(max_tasks=2, wait=1) == []
        assert await runner.submit(first[0]) == S.TASK_STATE_STORED
        started = time.monotonic()
        second = await runner.claim(max_tasks=2, wait=5)
        assert [c.assignment.task_id for c in second] == [reader]
        # released by the store, not by the end of a pull (fetch_wait) or of the long poll
        assert time.monotonic() - started < 0.5 * 5
        assert await runner.submit(second[0]) == S.TASK_STATE_STORED
        assert h.gateway.calls == [producer, reader]


@pytest.mark.integration
async def test_an_input_not_stored_yet_is_retried_then_parked(harness: Harness) -> None:
    h = harness
    node = await h.orchestrator(retry_wait=3.0)
    runner = h.runner(node)
    missing = task_pb2.TaskFailure(reason="HANDLE_NOT_FOUND", code=5, message="not stored")
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 43, ops=1), int(h.clock())
        )
        await runner.heartbeat()
        [claimed] = await runner.claim(wait=5)
        assert await runner.submit(claimed, failure=missing) == S.TASK_STATE_QUEUED
        [again] = await runner.claim(wait=5)
        assert again.assignment.task_id == task_id
        # the retry is not an attempt of its own: a real failure later still gets them all
        assert again.assignment.attempt == 1
        retries = 1
        state = await runner.submit(again, failure=missing)
        while state == S.TASK_STATE_QUEUED:
            [again] = await runner.claim(wait=5)
            retries += 1
            state = await runner.submit(again, failure=missing)
        assert state == S.TASK_STATE_FAILED
        assert retries >= 3  # exponential back-off from 0.1 s within the 3 s window
        [parked] = await read_parked(conn, 1)
        assert parked.reason == "HANDLE_NOT_FOUND"
        assert h.gateway.calls == []


@pytest.mark.integration
async def test_unavailable_gateway_spends_no_attempts_until_retry_wait(harness: Harness) -> None:
    """A gateway restart makes every runner fail its tasks at once with UNAVAILABLE: those
    failures must not use up the attempts (the chaos harness lost tasks to
    MAX_DELIVERIES_EXCEEDED)."""
    h = harness
    node = await h.orchestrator(max_attempts=2, retry_wait=3.0)
    runner = h.runner(node)
    down = task_pb2.TaskFailure(
        reason="UNAVAILABLE", code=14, message="gateway restarting", retryable=True
    )
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 44, ops=1), int(h.clock())
        )
        await runner.heartbeat()
        for _ in range(4):  # twice max_attempts, all within retry_wait
            [claimed] = await runner.claim(wait=5)
            assert claimed.assignment.attempt == 1
            assert await runner.submit(claimed, failure=down) == S.TASK_STATE_QUEUED
        [claimed] = await runner.claim(wait=5)  # the gateway is back
        assert claimed.assignment.task_id == task_id
        assert await runner.submit(claimed) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
