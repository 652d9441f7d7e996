"""Producer bindings at the gateway: signed on EncryptInput, checked on StoreResults and on
every read, carried to the KMS and to the user (nox.gateway.bindings)."""

from __future__ import annotations

import grpc
from gateway_servers import GatewayNet
from gateway_support import (
    UINT64,
    authorization,
    encrypt_request,
    expect,
    open_material,
    result_handle,
    u64,
)

from nox.crypto.binding import ciphertext_hash
from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.v1 import gateway_pb2
from nox.v1.orchestrator_pb2 import SubmitResultPayload

TASK = b"\x0b" * 32


async def test_an_input_carries_the_gateways_binding_to_the_user(gw: GatewayNet) -> None:
    handle = (
        await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(5)))
    ).handle
    user = EnclaveKey.generate()
    gw.acl.viewers.add((handle, user.address))
    requester = RequesterKey.generate_secp256k1()
    auth = authorization(user, requester, now=gw.clock.now)
    response = await gw.stub.Decrypt(
        gateway_pb2.DecryptRequest(authorization=auth, handles=[handle])
    )
    (served,) = response.ciphertexts
    binding = served.binding
    assert binding.task_id == b""  # an input: the gateway is its producer
    assert list(binding.proof) == []
    assert binding.ciphertext_hash == ciphertext_hash(served.nonce, served.ciphertext)
    assert len(binding.signature) == 65
    assert served.value_tag == b""
    assert served.value_tag_salt == b""
    assert open_material(
        response.ciphertexts,
        response.kms_delegations,
        requester,
        public=gw.public,
        gateway=gw.key.address,
        registry=gw.registry,
        now=gw.clock.now,
    ) == [u64(5)]


async def test_outputs_must_be_bound_by_their_runner(gw: GatewayNet) -> None:
    actors = gw.actors
    out = [result_handle(UINT64), result_handle(UINT64)]
    assignment = actors.assignment(TASK, [], out)
    values = [(out[0], u64(1)), (out[1], u64(2))]

    def resigned(change: str) -> gateway_pb2.SignedExecution:
        execution = actors.execution(assignment, TASK, values, gw.public.public_key)
        result = SubmitResultPayload.FromString(execution.result.payload)
        outputs = result.result.outputs
        if change == "signature":  # another registered runner's signature
            other = gw.registry.enrol(2)
            again = actors.execution(assignment, TASK, values, gw.public.public_key, runner=other)
            other_result = SubmitResultPayload.FromString(again.result.payload)
            outputs.binding_signature = other_result.result.outputs.binding_signature
        elif change == "missing":
            outputs.binding_signature = b""
        elif change == "salt":
            outputs.ciphertexts[1].value_tag_salt = b""
        elif change == "tag":  # a value tag other than the one the runner bound
            outputs.ciphertexts[0].value_tag = keccak256(b"another value")
        signed = sign_envelope(
            actors.runner,
            result,
            domain=actors.domain,
            audience=actors.orchestrator.address,
            now=gw.clock.now,
        )
        return gateway_pb2.SignedExecution(assignment=assignment, result=signed)

    for change in ("signature", "missing", "salt", "tag"):
        await expect(
            gw.stub.StoreResults(actors.store_request(TASK, [resigned(change)])),
            grpc.StatusCode.PERMISSION_DENIED,
            "BINDING_INVALID",
        )
        assert await gw.ctx.store.get(out) == {}
    await gw.stub.StoreResults(actors.store_request(TASK, [resigned("none")]))
    assert set(await gw.ctx.store.get(out)) == set(out)


async def test_an_expired_producers_rows_are_served_a_revoked_ones_are_not(
    gw: GatewayNet,
) -> None:
    actors = gw.actors
    out = result_handle(UINT64)
    assignment = actors.assignment(TASK, [], [out])
    execution = actors.execution(assignment, TASK, [(out, u64(7))], gw.public.public_key)
    await gw.stub.StoreResults(actors.store_request(TASK, [execution]))
    user = EnclaveKey.generate()
    gw.acl.viewers.add((out, user.address))

    async def decrypt() -> gateway_pb2.DecryptResponse:
        requester = RequesterKey.generate_secp256k1()
        auth = authorization(user, requester, now=gw.clock.now)
        return await gw.stub.Decrypt(gateway_pb2.DecryptRequest(authorization=auth, handles=[out]))

    gw.registry.expired.add(actors.runner.address)  # the runner's registration ran out
    (served,) = (await decrypt()).ciphertexts
    assert served.binding.task_id == TASK
    del gw.registry.roles[actors.runner.address]  # gone from the registry (revoked)
    error = await expect(decrypt(), grpc.StatusCode.DATA_LOSS, "STORED_RECORD_TAMPERED")
    assert error.metadata["why"] == "SIGNER_NOT_REGISTERED"
    assert set(await gw.ctx.store.get([out])) == {out}  # still stored, never served
