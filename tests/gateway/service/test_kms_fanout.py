"""KmsFanout asks exactly t KMS nodes, and another one only when an asked node fails.

Real 2-of-3 KMS over gRPC behind a real gateway; each node's Delegate is wrapped to count
the calls and, for one node, to fail or to answer something that does not verify.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import grpc
from gateway_servers import GatewayNet
from gateway_support import (
    DOMAIN,
    UINT64,
    encrypt_request,
    expect,
    open_gateway_answer,
    open_material,
    result_handle,
    u64,
)

from nox.crypto.delegation import RequesterKey
from nox.errors import Unavailable
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.v1 import gateway_pb2, kms_pb2

TASK = b"\x09" * 32
Behaviour = Callable[[kms_pb2.DelegateResponse], Awaitable[kms_pb2.DelegateResponse]]


def wrapped_fanout(gw: GatewayNet, asked: Counter[int], bad: dict[int, Behaviour]) -> KmsFanout:
    """The gateway's fan-out over the same nodes, counting calls; node i answers through
    `bad[i]` when given."""

    def endpoint(node: KmsNodeEndpoint) -> KmsNodeEndpoint:
        async def call(request: kms_pb2.DelegateRequest) -> kms_pb2.DelegateResponse:
            asked[node.index] += 1
            response = await node.call(request)
            behave = bad.get(node.index)
            return response if behave is None else await behave(response)

        return KmsNodeEndpoint(index=node.index, address=node.address, call=call)

    return KmsFanout(
        [endpoint(n) for n in gw.kms.endpoints()],
        key=gw.key,
        domain=DOMAIN,
        public=gw.public,
        directory=gw.registry,
        clock=gw.clock,
    )


async def operands_request(
    gw: GatewayNet, value: int
) -> tuple[gateway_pb2.GetOperandsRequest, RequesterKey]:
    """A runner's GetOperands request for one fresh input of `value`, and its key."""
    handle = (
        await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(value)))
    ).handle  # type: ignore[misc]
    requester = RequesterKey.generate_secp256k1()
    assignment = gw.actors.assignment(TASK, [handle], [result_handle(UINT64)])
    return gw.actors.operands_request(assignment, [handle], requester, task_id=TASK), requester


async def operands(gw: GatewayNet, value: int) -> list[bytes]:
    """GetOperands for one fresh input of `value`, decrypted as a runner does."""
    request, requester = await operands_request(gw, value)
    response = await gw.stub.GetOperands(request)  # type: ignore[misc]
    answer = open_gateway_answer(
        response.envelope,
        gateway_pb2.GetOperandsResponsePayload,
        gateway=gw.key.address,
        audience=gw.actors.runner.address,
        now=gw.clock.now,
    )
    assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
    assert len(answer.kms_delegations) == 2
    return open_material(
        answer.operands,
        answer.kms_delegations,
        requester,
        public=gw.public,
        gateway=gw.key.address,
        registry=gw.registry,
        now=gw.clock.now,
    )


async def test_exactly_t_nodes_are_asked_in_rotation(gw: GatewayNet) -> None:
    asked: Counter[int] = Counter()
    gw.ctx.kms = wrapped_fanout(gw, asked, {})
    for value in (1, 2, 3):
        assert await operands(gw, value) == [u64(value)]
    assert sum(asked.values()) == 3 * 2  # t per request, never n
    assert asked == Counter({1: 2, 2: 2, 3: 2})  # the load spreads over the nodes


async def test_a_failing_node_makes_the_gateway_ask_another_and_is_asked_last(
    gw: GatewayNet,
) -> None:
    async def fail(response: kms_pb2.DelegateResponse) -> kms_pb2.DelegateResponse:
        raise Unavailable("node down")

    asked: Counter[int] = Counter()
    gw.ctx.kms = wrapped_fanout(gw, asked, {2: fail})
    value = 40
    while not asked[2]:  # the rotation reaches node 2 within n requests
        before = sum(asked.values())
        value += 1
        assert await operands(gw, value) == [u64(value)]
    assert sum(asked.values()) - before == 3  # node 2 failed: the third node was asked
    before = sum(asked.values())
    for value in (5, 6, 7):
        assert await operands(gw, value) == [u64(value)]
    assert sum(asked.values()) - before == 3 * 2  # the failed node is asked last: not at all
    assert asked[2] == 1


async def test_answers_that_do_not_verify_are_replaced_by_another_nodes(
    gw: GatewayNet,
) -> None:
    async def lie(response: kms_pb2.DelegateResponse) -> kms_pb2.DelegateResponse:
        forged = kms_pb2.DelegateResponse()
        forged.CopyFrom(response)
        forged.envelope.payload = forged.envelope.payload + b"\x00"  # the signature fails
        return forged

    asked: Counter[int] = Counter()
    gw.ctx.kms = wrapped_fanout(gw, asked, {2: lie})
    for value in (10, 11, 12):
        assert await operands(gw, value) == [u64(value)]
    assert asked[2] == 1  # asked once, refused, then asked last
    assert sum(asked.values()) == 3 * 2 + 1

    asked.clear()
    gw.ctx.kms = wrapped_fanout(gw, asked, {1: lie, 2: lie})
    await expect(
        gw.stub.GetOperands((await operands_request(gw, 13))[0]),
        grpc.StatusCode.UNAVAILABLE,
        "KMS_QUORUM_NOT_REACHED",
    )
    assert asked == Counter({1: 1, 2: 1, 3: 1})  # every node asked once, no more
