"""GetOperands over real gRPC with a real 2-of-3 KMS: release, and every refusal."""

from __future__ import annotations

import os
from typing import Any

import grpc
from gateway_servers import GatewayNet
from gateway_support import (
    ORCHESTRATOR,
    RUNNER,
    UINT64,
    encrypt_request,
    expect,
    open_gateway_answer,
    open_material,
    result_handle,
    u64,
)

from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.v1 import common_pb2, gateway_pb2

TASK = b"\x07" * 32


async def inputs(gw: GatewayNet, *values: int) -> list[bytes]:
    handles = []
    for v in values:
        handles.append(
            (
                await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(v)))
            ).handle
        )
    return handles


async def test_runner_gets_the_operands_of_its_task_and_decrypts_them(gw: GatewayNet) -> None:
    a, b = await inputs(gw, 7, 35)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a, b], [result_handle(UINT64)])
    request = gw.actors.operands_request(assignment, [b, a], requester, task_id=TASK)
    response = await gw.stub.GetOperands(request)
    answer = open_gateway_answer(
        response.envelope,
        gateway_pb2.GetOperandsResponsePayload,
        gateway=gw.key.address,
        audience=gw.actors.runner.address,
        now=gw.clock.now,
    )
    assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
    assert answer.request_hash == keccak256(request.envelope.payload)
    assert [o.handle for o in answer.operands] == [b, a]
    assert all(o.value_tag == b"" for o in answer.operands)  # tags never leave to runners
    assert (answer.kms_threshold, answer.kms_epoch) == (2, 0)
    assert len(answer.kms_delegations) == 2  # t of n, passed through unchanged
    plaintexts = open_material(
        answer.operands,
        answer.kms_delegations,
        requester,
        public=gw.public,
        gateway=gw.key.address,
        registry=gw.registry,
        now=gw.clock.now,
    )
    assert plaintexts == [u64(35), u64(7)]


def _answer(gw: GatewayNet, response: Any) -> gateway_pb2.GetOperandsResponsePayload:
    answer = open_gateway_answer(
        response.envelope,
        gateway_pb2.GetOperandsResponsePayload,
        gateway=gw.key.address,
        audience=gw.actors.runner.address,
        now=gw.clock.now,
    )
    assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
    return answer


def _decrypted(gw: GatewayNet, response: Any, requester: RequesterKey) -> list[bytes]:
    answer = _answer(gw, response)
    return open_material(
        answer.operands,
        answer.kms_delegations,
        requester,
        public=gw.public,
        gateway=gw.key.address,
        registry=gw.registry,
        now=gw.clock.now,
    )


def good_handles(request: gateway_pb2.GetOperandsRequest) -> list[bytes]:
    return list(gateway_pb2.GetOperandsPayload.FromString(request.envelope.payload).handles)


async def test_one_kms_node_down_still_serves_and_two_down_is_unavailable(
    gw: GatewayNet,
) -> None:
    (a,) = await inputs(gw, 1)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a], [result_handle(UINT64)])
    await gw.kms.servers[0].stop(0)
    response = await gw.stub.GetOperands(
        gw.actors.operands_request(assignment, [a], requester, task_id=TASK)
    )
    assert _decrypted(gw, response, requester) == [u64(1)]  # the other t nodes answered
    await gw.kms.servers[1].stop(0)
    await expect(
        gw.stub.GetOperands(gw.actors.operands_request(assignment, [a], requester, task_id=TASK)),
        grpc.StatusCode.UNAVAILABLE,
        "KMS_QUORUM_NOT_REACHED",
    )


async def test_no_operands_for_a_handle_outside_the_assignment(gw: GatewayNet) -> None:
    a, other = await inputs(gw, 1, 2)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a], [result_handle(UINT64)])
    await expect(
        gw.stub.GetOperands(
            gw.actors.operands_request(assignment, [a, other], requester, task_id=TASK)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "HANDLE_NOT_IN_ASSIGNMENT",
    )


async def test_an_assigned_handle_that_is_not_stored_is_not_found(gw: GatewayNet) -> None:
    missing = result_handle(UINT64)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [missing], [result_handle(UINT64)])
    await expect(
        gw.stub.GetOperands(
            gw.actors.operands_request(assignment, [missing], requester, task_id=TASK)
        ),
        grpc.StatusCode.NOT_FOUND,
        "HANDLE_NOT_FOUND",
    )


async def test_a_replayed_request_is_refused(gw: GatewayNet) -> None:
    (a,) = await inputs(gw, 1)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a], [result_handle(UINT64)])
    request = gw.actors.operands_request(assignment, [a], requester, task_id=TASK)
    await gw.stub.GetOperands(request)
    await expect(gw.stub.GetOperands(request), grpc.StatusCode.UNAUTHENTICATED, "NONCE_REPLAYED")


def _tampered(request: gateway_pb2.GetOperandsRequest) -> gateway_pb2.GetOperandsRequest:
    env = request.envelope
    env.payload = env.payload[:-1] + bytes([env.payload[-1] ^ 1])
    return request


async def test_refusals_of_signed_requests(gw: GatewayNet) -> None:
    """Each bad request of DESIGN §9 with its code and reason; the gateway keeps serving."""
    (a,) = await inputs(gw, 1)
    actors, now = gw.actors, gw.clock.now
    requester = RequesterKey.generate_secp256k1()
    good = actors.assignment(TASK, [a], [result_handle(UINT64)])
    stranger = EnclaveKey.generate()  # not registered
    other_runner = gw.registry.enrol(RUNNER)
    expired_runner = gw.registry.enrol(RUNNER)
    gw.registry.expired.add(expired_runner.address)

    def req(**kw):  # type: ignore[no-untyped-def]
        assignment = kw.pop("assignment", good)
        handles = kw.pop("handles", [a])
        return actors.operands_request(assignment, handles, requester, task_id=TASK, **kw)

    unsigned = req()
    unsigned.envelope.signature = b""
    bad_v = req()
    bad_v.envelope.signature = bad_v.envelope.signature[:64] + b"\x05"
    garbage_payload = req()
    garbage_payload.envelope.payload = b"\xff\xff\xff"
    wrong_type = req()
    wrong_type.envelope.payload_type = "nox.v1.StoreResultsPayload"
    bad_key = actors.operands_request(good, [a], requester, task_id=TASK)
    cases = [
        (unsigned, grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_MALFORMED"),
        (bad_v, grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_MALFORMED"),
        # a tampered payload recovers to another, unregistered address
        (_tampered(req()), grpc.StatusCode.PERMISSION_DENIED, "SIGNER_NOT_REGISTERED"),
        (wrong_type, grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_TYPE_MISMATCH"),
        (req(ttl=30, issued_at=now - 100), grpc.StatusCode.UNAUTHENTICATED, "ENVELOPE_EXPIRED"),
        (req(issued_at=now + 600), grpc.StatusCode.UNAUTHENTICATED, "ENVELOPE_NOT_YET_VALID"),
        (req(ttl=7200), grpc.StatusCode.INVALID_ARGUMENT, "ENVELOPE_WINDOW_INVALID"),
        (req(audience=os.urandom(20)), grpc.StatusCode.PERMISSION_DENIED, "WRONG_AUDIENCE"),
        (req(runner=stranger), grpc.StatusCode.PERMISSION_DENIED, "SIGNER_NOT_REGISTERED"),
        (req(runner=actors.orchestrator), grpc.StatusCode.PERMISSION_DENIED, "ROLE_MISMATCH"),
        (req(runner=expired_runner), grpc.StatusCode.PERMISSION_DENIED, "REGISTRATION_EXPIRED"),
        # the assignment: signed by a non-orchestrator, for another runner, lease over
        (req(assignment=actors.assignment(TASK, [a], [], signer=actors.runner)),
         grpc.StatusCode.PERMISSION_DENIED, "ROLE_MISMATCH"),
        (req(assignment=actors.assignment(TASK, [a], [], runner=other_runner)),
         grpc.StatusCode.PERMISSION_DENIED, "WRONG_AUDIENCE"),
        (req(assignment=actors.assignment(TASK, [a], [], lease=-1)),
         grpc.StatusCode.DEADLINE_EXCEEDED, "LEASE_EXPIRED"),
        (req(assignment=actors.assignment(b"\x08" * 32, [a], [])),
         grpc.StatusCode.PERMISSION_DENIED, "DELEGATION_NOT_AUTHORIZED"),
        (req(handles=[]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (req(handles=[a, a]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (req(handles=[a[:31]]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HANDLE"),
    ]  # fmt: skip
    for request, code, reason in cases:
        await expect(gw.stub.GetOperands(request), code, reason)
    # a requester key that is not a point
    payload = gateway_pb2.GetOperandsPayload.FromString(bad_key.envelope.payload)
    payload.requester_key.CopyFrom(
        common_pb2.RequesterKey(
            kind=common_pb2.REQUESTER_KEY_KIND_SECP256K1, public_key=b"\x05" * 33
        )
    )
    env = sign_envelope(actors.runner, payload, domain=gw.ctx.domain, audience=gw.key.address,
                        now=now)  # fmt: skip
    await expect(
        gw.stub.GetOperands(gateway_pb2.GetOperandsRequest(envelope=env)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUESTER_KEY",
    )
    # the gateway still serves the good request afterwards, with the right operands
    good = req()
    answer = _answer(gw, await gw.stub.GetOperands(good))
    assert answer.request_hash == keccak256(good.envelope.payload)
    assert len(answer.operands) == len(good_handles(good))


async def test_an_oversized_envelope_is_refused_before_any_work(gw: GatewayNet) -> None:
    from nox.gateway.context import GatewayLimits

    gw.ctx.limits = GatewayLimits(max_envelope_bytes=4096)
    (a,) = await inputs(gw, 1)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a] + [os.urandom(32) for _ in range(200)], [])
    calls = gw.registry.calls
    await expect(
        gw.stub.GetOperands(gw.actors.operands_request(assignment, [a], requester, task_id=TASK)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RESOURCE_EXHAUSTED",
    )
    assert gw.registry.calls == calls  # refused before the registry was even asked


async def test_orchestrator_role_cannot_fetch_operands(gw: GatewayNet) -> None:
    (a,) = await inputs(gw, 1)
    orchestrator2 = gw.registry.enrol(ORCHESTRATOR)
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [a], [], runner=orchestrator2)
    await expect(
        gw.stub.GetOperands(
            gw.actors.operands_request(assignment, [a], requester, task_id=TASK,
                                       runner=orchestrator2)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_MISMATCH",
    )  # fmt: skip
