"""StoreResults over real gRPC: created once, unchanged on re-publication, conflicts refused."""

from __future__ import annotations

import grpc
import pytest
from gateway_servers import GatewayNet
from gateway_support import (
    BOOL,
    RUNNER,
    UINT64,
    encrypt_request,
    expect,
    open_gateway_answer,
    result_handle,
    u64,
)

from nox.crypto.hashing import keccak256
from nox.v1 import gateway_pb2
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskFailure, TaskResult

TASK = b"\x09" * 32


async def snapshot(gw: GatewayNet, handles: list[bytes]) -> dict[bytes, object]:
    return {h: s.record for h, s in (await gw.ctx.store.get(handles)).items()}


async def test_results_are_stored_once_then_unchanged(gw: GatewayNet) -> None:
    actors = gw.actors
    out = [result_handle(BOOL), result_handle(UINT64)]
    assignment = actors.assignment(TASK, [], out)
    values = [(out[0], b"\x01"), (out[1], u64(99))]
    request = actors.store_request(
        TASK, [actors.execution(assignment, TASK, values, gw.public.public_key)]
    )
    response = await gw.stub.StoreResults(request)
    answer = open_gateway_answer(
        response.envelope,
        gateway_pb2.StoreResultsResponsePayload,
        gateway=gw.key.address,
        audience=actors.orchestrator.address,
        now=gw.clock.now,
    )
    assert isinstance(answer, gateway_pb2.StoreResultsResponsePayload)
    assert answer.request_hash == keccak256(request.envelope.payload)
    assert answer.task_id == TASK
    assert [(s.handle, s.outcome) for s in answer.stored_handles] == [
        (h, gateway_pb2.STORE_OUTCOME_CREATED) for h in out
    ]
    before = await snapshot(gw, out)
    # A re-execution after a crash: new ciphertexts, same values, same tags -> unchanged.
    again = actors.store_request(
        TASK, [actors.execution(assignment, TASK, values, gw.public.public_key)]
    )
    answer = open_gateway_answer(
        (await gw.stub.StoreResults(again)).envelope,
        gateway_pb2.StoreResultsResponsePayload,
        gateway=gw.key.address,
        audience=actors.orchestrator.address,
        now=gw.clock.now,
    )
    assert isinstance(answer, gateway_pb2.StoreResultsResponsePayload)
    assert {s.outcome for s in answer.stored_handles} == {gateway_pb2.STORE_OUTCOME_UNCHANGED}
    assert await snapshot(gw, out) == before  # the first ciphertexts stay
    status = await gw.stub.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=out))
    assert {(s.origin, s.task_id) for s in status.statuses} == {
        (gateway_pb2.HANDLE_ORIGIN_TASK, TASK)
    }


async def test_a_different_value_under_a_stored_handle_changes_nothing(gw: GatewayNet) -> None:
    actors = gw.actors
    out = [result_handle(UINT64)]
    assignment = actors.assignment(TASK, [], out)
    key = gw.public.public_key
    await gw.stub.StoreResults(
        actors.store_request(TASK, [actors.execution(assignment, TASK, [(out[0], u64(1))], key)])
    )
    before = await snapshot(gw, out)
    conflicting = actors.store_request(
        TASK, [actors.execution(assignment, TASK, [(out[0], u64(2))], key)]
    )
    await expect(gw.stub.StoreResults(conflicting), grpc.StatusCode.ALREADY_EXISTS, "TASK_CONFLICT")
    # Another task claiming the same output handle, and a task overwriting a user input.
    other = b"\x0a" * 32
    await expect(
        gw.stub.StoreResults(
            actors.store_request(
                other,
                [actors.execution(actors.assignment(other, [], out), other,
                                  [(out[0], u64(1))], key)],
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "HANDLE_EXISTS",
    )  # fmt: skip
    user_input = (await gw.stub.EncryptInput(encrypt_request(gw.key.public_key))).handle
    await expect(
        gw.stub.StoreResults(
            actors.store_request(
                other,
                [actors.execution(actors.assignment(other, [], [user_input]), other,
                                  [(user_input, u64(5))], key)],
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "HANDLE_EXISTS",
    )  # fmt: skip
    assert await snapshot(gw, out) == before
    assert await gw.ctx.store.task(other) is None


async def test_refused_results_store_nothing(gw: GatewayNet) -> None:
    actors, key = gw.actors, gw.public.public_key
    out = [result_handle(UINT64), result_handle(BOOL)]
    good = actors.assignment(TASK, [], out)
    values = [(out[0], u64(3)), (out[1], b"\x00")]
    other_runner = gw.registry.enrol(RUNNER)

    def failed_execution() -> gateway_pb2.SignedExecution:
        execution = actors.execution(good, TASK, values, key)
        from nox.crypto.envelope import sign_envelope

        result = SubmitResultPayload(
            result=TaskResult(
                task_id=TASK,
                assignment_hash=keccak256(good.payload),
                failure=TaskFailure(reason="DECRYPTION_FAILED", code=9),
            )
        )
        execution.result.CopyFrom(
            sign_envelope(actors.runner, result, domain=gw.ctx.domain,
                          audience=actors.orchestrator.address, now=gw.clock.now)
        )  # fmt: skip
        return execution

    second_assignment = actors.assignment(TASK, [], out, runner=other_runner, redundancy=2)
    cases = [
        # outputs not exactly the assignment's: missing one, wrong order, an extra one
        (actors.store_request(TASK, [actors.execution(good, TASK, values[:1], key)]),
         grpc.StatusCode.INVALID_ARGUMENT, "OUTPUTS_MISMATCH"),
        (actors.store_request(TASK, [actors.execution(good, TASK, values[::-1], key)]),
         grpc.StatusCode.INVALID_ARGUMENT, "OUTPUTS_MISMATCH"),
        (actors.store_request(TASK, [failed_execution()]),
         grpc.StatusCode.INVALID_ARGUMENT, "OUTPUTS_MISMATCH"),
        # signed by a runner instead of an orchestrator
        (actors.store_request(TASK, [actors.execution(good, TASK, values, key)],
                              signer=actors.runner),
         grpc.StatusCode.PERMISSION_DENIED, "ROLE_MISMATCH"),
        # a result signed by a runner that does not hold the assignment
        (actors.store_request(TASK, [actors.execution(good, TASK, values, key,
                                                      runner=other_runner)]),
         grpc.StatusCode.PERMISSION_DENIED, "WRONG_AUDIENCE"),
        # the result is for another task than the request
        (actors.store_request(b"\x0b" * 32, [actors.execution(good, TASK, values, key)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        # redundancy 2: the second runner disagrees
        (actors.store_request(TASK, [
            actors.execution(good, TASK, values, key),
            actors.execution(second_assignment, TASK, [(out[0], u64(4)), values[1]], key,
                             runner=other_runner)]),
         grpc.StatusCode.FAILED_PRECONDITION, "RESULT_DISAGREEMENT"),
        # redundancy 2 asked, one execution given
        (actors.store_request(TASK, [actors.execution(second_assignment, TASK, values, key,
                                                      runner=other_runner)]),
         grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        # an output over the task's ciphertext size limit
        (actors.store_request(TASK, [actors.execution(
            actors.assignment(TASK, [], out, max_ciphertext_bytes=8), TASK, values, key)]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "TASK_LIMIT_EXCEEDED"),
        (actors.store_request(TASK, []), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ]  # fmt: skip
    for request, code, reason in cases:
        await expect(gw.stub.StoreResults(request), code, reason)
    assert await gw.ctx.store.count() == 0
    replayed = actors.store_request(TASK, [actors.execution(good, TASK, values, key)])
    await gw.stub.StoreResults(replayed)
    await expect(gw.stub.StoreResults(replayed), grpc.StatusCode.UNAUTHENTICATED, "NONCE_REPLAYED")


async def test_redundant_agreeing_executions_are_stored(gw: GatewayNet) -> None:
    actors, key = gw.actors, gw.public.public_key
    other_runner = gw.registry.enrol(RUNNER)
    out = [result_handle(UINT64)]
    values = [(out[0], u64(8))]
    executions = [
        actors.execution(actors.assignment(TASK, [], out, redundancy=2), TASK, values, key),
        actors.execution(
            actors.assignment(TASK, [], out, runner=other_runner, redundancy=2),
            TASK,
            values,
            key,
            runner=other_runner,
        ),
    ]
    await gw.stub.StoreResults(actors.store_request(TASK, executions))
    assert set(await gw.ctx.store.get(out)) == set(out)


@pytest.mark.integration
async def test_racing_publications_on_postgresql_create_once(
    pg_url: str,
    clock,
    registry,
    acl,
    kms,  # type: ignore[no-untyped-def]
) -> None:
    """Two orchestrators forward the same task at once: one CREATED, the other UNCHANGED."""
    import asyncio

    from gateway_servers import start_gateway, stop_gateway
    from gateway_support import GATEWAY, ORCHESTRATOR

    gw = await start_gateway(
        store_url=pg_url, clock=clock, registry=registry, acl=acl, kms=kms,
        key=registry.enrol(GATEWAY), orchestrator=registry.enrol(ORCHESTRATOR),
        runner=registry.enrol(RUNNER),
    )  # fmt: skip
    try:
        actors, key = gw.actors, gw.public.public_key
        for round_ in range(5):
            task = bytes([round_]) * 32
            out = [result_handle(UINT64) for _ in range(3)]
            assignment = actors.assignment(task, [], out)
            values = [(h, u64(i)) for i, h in enumerate(out)]
            requests = [
                actors.store_request(task, [actors.execution(assignment, task, values, key)])
                for _ in range(2)
            ]
            responses = await asyncio.gather(*(gw.stub.StoreResults(r) for r in requests))
            outcomes = sorted(
                gateway_pb2.StoreResultsResponsePayload.FromString(r.envelope.payload)
                .stored_handles[0]
                .outcome
                for r in responses
            )
            assert outcomes == [
                gateway_pb2.STORE_OUTCOME_CREATED,
                gateway_pb2.STORE_OUTCOME_UNCHANGED,
            ]
            assert set(await gw.ctx.store.get(out)) == set(out)
    finally:
        await stop_gateway(gw)
