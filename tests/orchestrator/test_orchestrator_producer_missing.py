"""A task whose input's producer never arrives is reported within a bounded time.

The producer's message may be lost or suppressed (a squatted message id before the ingestor
checked it, an operator's mistake): the reader's runners keep finding the input missing.
After `producer_missing_after` seconds the task is reported: gauge, log line, and
GetTaskStatus with failure reason PRODUCER_MISSING while the task is still queued.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from natsfix import open_queue
from orch_doubles import Harness, handle, publish, tx_message

from nox.orchestrator.dependencies import missing_inputs
from nox.v1 import task_pb2

S = task_pb2.TaskState


def test_missing_inputs_are_the_handles_the_failure_names() -> None:
    a, b = handle(1), handle(2)
    assert missing_inputs(f"not stored: 0x{b.hex()}", [a, b]) == [b]
    assert missing_inputs("not stored", [a, b]) == [a, b]  # names none: all of them


async def _status_until(node: object, task_id: bytes, reason: str) -> task_pb2.TaskStatus:
    scheduler = node.scheduler  # type: ignore[attr-defined]
    for _ in range(100):  # the housekeeping loop runs every 0.1 s
        status = scheduler.status(task_id)
        if status.failure.reason == reason:
            return status  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"status never showed {reason}: {status}")


@pytest.mark.integration
async def test_a_producer_that_never_arrives_is_reported_then_cleared(harness: Harness) -> None:
    h = harness
    offset = [0.0]
    h.clock = h.gateway.clock = lambda: time.time() + offset[0]
    node = await h.orchestrator(producer_missing_after=30.0, retry_wait=600.0)
    runner = h.runner(node)
    msg = tx_message(h.deployment, 45, ops=1)
    lost = bytes(msg.operations[0].input_handles[0])  # no transaction will ever produce it
    missing = task_pb2.TaskFailure(
        reason="HANDLE_NOT_FOUND", code=5, message=f"not stored: 0x{lost.hex()}"
    )
    async with open_queue(h.queue) as conn:
        task_id = await publish(conn, h.ingestor, h.domain, msg, int(h.clock()))
        await runner.heartbeat()
        [claimed] = await runner.claim(wait=5)
        assert await runner.submit(claimed, failure=missing) == S.TASK_STATE_QUEUED
        assert node.scheduler is not None
        await node.scheduler.tick()
        assert node.scheduler.status(task_id).failure.reason == ""  # not yet reported
        assert node.scheduler.metrics.producer_missing._value.get() == 0
        offset[0] += 31.0  # past producer_missing_after
        status = await _status_until(node, task_id, "PRODUCER_MISSING")
        assert status.state == S.TASK_STATE_QUEUED
        assert f"0x{lost.hex()}" in status.failure.message
        assert node.scheduler.metrics.producer_missing._value.get() == 1
        # the producer shows up after all (re-ingested): the task is computed, report cleared
        await runner.heartbeat()
        [again] = await runner.claim(wait=5)
        assert await runner.submit(again) == S.TASK_STATE_STORED
        await node.scheduler.tick()
        assert node.scheduler.status(task_id).failure.reason == ""
        assert node.scheduler.metrics.producer_missing._value.get() == 0
    assert h.gateway.calls == [task_id]
