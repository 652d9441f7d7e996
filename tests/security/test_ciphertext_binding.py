"""Issue 14, attack 1: a gateway-database writer who may view one handle decrypts another.

The attack as reproduced on the devnet: copy Alice's ciphertext key K into the row of a
handle Mallory may view (one SQL UPDATE on the real store), then Mallory's normal Decrypt of
her own handle returns x·K_alice, which opens Alice's stored ciphertext. Each test runs it
with raw SQL on the gateway's real database (SQLite and PostgreSQL), through the real
gateway and 2-of-3 KMS servers over gRPC, and checks it is refused with its documented
reason and that Alice's value is not learnt. Before handle bindings (the parent commit) the
copied K and the moved row returned Alice's balance, the replaced row was served, and a
runner could bind Alice's K to its own output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import grpc
import pytest
from gateway_servers import GatewayNet
from gateway_support import (
    DOMAIN,
    UINT64,
    authorization,
    encrypt_request,
    result_handle,
    u64,
)
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.kms.client import collect_partials, combine_targets
from nox.v1 import common_pb2, gateway_pb2, kms_pb2, kms_pb2_grpc
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskOutputs, TaskResult

pytestmark = [pytest.mark.integration]

ALICE_BALANCE = 877
COLUMNS = (
    "ciphertext",
    "ephemeral_public_key",
    "nonce",
    "value_tag",
    "binding_salt",
    "binding_signature",
    "binding_proof",
    "binding_key_proof",
)


# ---------------------------------------------------------------- the attacker's tools


def _sql(gw: GatewayNet, statement: str, **params: Any) -> list[Mapping[str, Any]]:
    """One statement on the gateway's database, as its writer runs it (not through the store)."""
    engine = create_engine(gw.store_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [dict(r._mapping) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _row(gw: GatewayNet, handle: bytes) -> Mapping[str, Any]:
    (row,) = _sql(gw, "SELECT * FROM gateway_handles WHERE handle = :h", h=handle)
    return {k: bytes(v) if isinstance(v, bytes | memoryview) else v for k, v in row.items()}


async def _input(gw: GatewayNet, value: int) -> bytes:
    return (
        await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(value)))
    ).handle


def _open_alice(
    gw: GatewayNet,
    requester: RequesterKey,
    response: gateway_pb2.DecryptResponse,
    alice: Mapping[str, Any],
    alice_handle: bytes,
) -> bytes | None:
    """What Mallory does with her partials: S = x·K for the K she was served, then Alice's
    stored ciphertext under Alice's handle. None when it does not open."""
    (served,) = response.ciphertexts
    targets = [(bytes(served.handle), bytes(served.ephemeral_public_key))]
    collected = collect_partials(
        response.kms_delegations,
        targets=targets,
        public=gw.public,
        requester_kind=requester.public.kind,
        domain=DOMAIN,
        audience=gw.key.address,
        registry=gw.registry,
        now=gw.clock.now,
    )
    (combo,) = combine_targets(
        collected, targets=targets, public=gw.public, requester_key=requester
    )
    ct = ecies.Ciphertext(alice["ciphertext"], alice["ephemeral_public_key"], alice["nonce"])
    try:
        return ecies.decrypt_with_shared_point(combo.shared_point, ct, alice_handle)
    except NoxError:
        return None


async def _mallory_decrypts(
    gw: GatewayNet, mallory: EnclaveKey, handle: bytes, alice: Mapping[str, Any], alice_h: bytes
) -> tuple[NoxError | None, bytes | None]:
    """Mallory's normal Decrypt of her own handle: (the refusal, or what she learnt)."""
    requester = RequesterKey.generate_secp256k1()
    auth = authorization(mallory, requester, now=gw.clock.now, handles=[handle])
    try:
        response = await gw.stub.Decrypt(
            gateway_pb2.DecryptRequest(authorization=auth, handles=[handle])
        )
    except NoxError as exc:
        return exc, None
    return None, _open_alice(gw, requester, response, alice, alice_h)


async def _alice_and_mallory(gw: GatewayNet) -> tuple[bytes, bytes, EnclaveKey]:
    alice_h = await _input(gw, ALICE_BALANCE)
    mallory_h = await _input(gw, 1)
    mallory = EnclaveKey.generate()
    gw.acl.viewers.add((mallory_h, mallory.address))  # she may view her own handle only
    return alice_h, mallory_h, mallory


def _refused_as_tampered(error: NoxError | None, handle: bytes) -> None:
    assert error is not None, "the tampered row was served"
    assert (error.code, error.reason) == (grpc.StatusCode.DATA_LOSS, "STORED_RECORD_TAMPERED")
    assert error.metadata["handle"] == "0x" + handle.hex()


# ---------------------------------------------------------------- the attacks


async def test_alices_k_copied_into_mallorys_row_is_refused_and_nothing_learnt(
    gw: GatewayNet,
) -> None:
    alice_h, mallory_h, mallory = await _alice_and_mallory(gw)
    alice = _row(gw, alice_h)
    # the control: before the attack Mallory decrypts her own value
    error, _ = await _mallory_decrypts(gw, mallory, mallory_h, alice, alice_h)
    assert error is None
    _sql(
        gw,
        "UPDATE gateway_handles SET ephemeral_public_key = :k WHERE handle = :h",
        k=alice["ephemeral_public_key"],
        h=mallory_h,
    )
    error, learnt = await _mallory_decrypts(gw, mallory, mallory_h, alice, alice_h)
    assert learnt is None, f"Mallory learnt Alice's value {learnt!r}"
    _refused_as_tampered(error, mallory_h)


async def test_each_kms_node_refuses_the_copied_k_by_itself(gw: GatewayNet) -> None:
    """Whatever the gateway forwards, a node delegates (handle, K) only under a binding that
    covers it: the row's own binding does not cover Alice's K, and none is refused too."""
    from nox.gateway.bindings import evidence  # imported here: absent before bindings
    from nox.kms.wire import binding_to_proto

    alice_h, mallory_h, mallory = await _alice_and_mallory(gw)
    alice = _row(gw, alice_h)
    (stored,) = await gw.ctx.store.require([mallory_h])
    requester = RequesterKey.generate_secp256k1()
    auth = authorization(mallory, requester, now=gw.clock.now, handles=[mallory_h])
    bound = binding_to_proto(evidence(stored))  # type: ignore[arg-type]
    cases = [(bound, "BINDING_INVALID"), (None, "BINDING_MISSING")]
    for binding, reason in cases:
        target = kms_pb2.DelegationTarget(
            handle=mallory_h, ephemeral_public_key=alice["ephemeral_public_key"], binding=binding
        )
        payload = kms_pb2.DelegatePayload(
            epoch=gw.public.epoch,
            requester_key=auth.requester_key,
            targets=[target],
            user_authorization=auth,
        )
        for key, channel in zip(gw.kms.keys, gw.kms.channels, strict=True):
            envelope = sign_envelope(
                gw.key, payload, domain=DOMAIN, audience=key.address, now=gw.clock.now
            )
            with pytest.raises(NoxError) as info:
                await kms_pb2_grpc.KmsServiceStub(channel).Delegate(
                    kms_pb2.DelegateRequest(envelope=envelope)
                )
            assert (info.value.code, info.value.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                reason,
            )


async def test_alices_whole_row_moved_under_mallorys_handle_is_refused(gw: GatewayNet) -> None:
    alice_h, mallory_h, mallory = await _alice_and_mallory(gw)
    alice = _row(gw, alice_h)
    columns = [c for c in COLUMNS if c in alice]  # (the binding columns exist since 0002)
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    _sql(
        gw,
        f"UPDATE gateway_handles SET {assignments} WHERE handle = :h",  # noqa: S608 (fixed names)
        h=mallory_h,
        **{c: alice[c] for c in columns},
    )
    error, learnt = await _mallory_decrypts(gw, mallory, mallory_h, alice, alice_h)
    assert learnt is None, f"Mallory learnt Alice's value {learnt!r}"
    _refused_as_tampered(error, mallory_h)


@pytest.mark.parametrize("binding", ["kept", "removed"])
async def test_a_row_replaced_by_a_fresh_encryption_is_refused(
    gw: GatewayNet, binding: str
) -> None:
    """The writer knows PK: it encrypts another value under Mallory's handle (a well-formed
    ciphertext, the right value tag) and writes it over her row, keeping or removing the
    binding columns. The gateway refuses the row for Decrypt, PublicDecrypt and GetOperands."""
    _, mallory_h, mallory = await _alice_and_mallory(gw)
    forged = u64(10**6)
    ct = ecies.encrypt(gw.public.public_key, forged, mallory_h)
    statement = (
        "UPDATE gateway_handles SET ciphertext = :c, ephemeral_public_key = :k, nonce = :n, "
        "value_tag = :t WHERE handle = :h"
    )
    if binding == "removed":
        statement = statement.replace(
            " WHERE",
            ", binding_salt = NULL, binding_signature = NULL, binding_proof = NULL, "
            "binding_key_proof = NULL WHERE",
        )
    _sql(
        gw,
        statement,
        c=ct.ciphertext,
        k=ct.ephemeral_public_key,
        n=ct.nonce,
        t=os.urandom(32),  # the writer cannot compute a keyed tag: any 32 bytes will do
        h=mallory_h,
    )
    requester = RequesterKey.generate_secp256k1()
    auth = authorization(mallory, requester, now=gw.clock.now, handles=[mallory_h])
    with pytest.raises(NoxError) as info:
        await gw.stub.Decrypt(gateway_pb2.DecryptRequest(authorization=auth, handles=[mallory_h]))
    _refused_as_tampered(info.value, mallory_h)
    gw.acl.public.add(mallory_h)
    with pytest.raises(NoxError) as info:
        await gw.stub.PublicDecrypt(gateway_pb2.PublicDecryptRequest(handles=[mallory_h]))
    _refused_as_tampered(info.value, mallory_h)
    task = keccak256(b"task")
    assignment = gw.actors.assignment(task, [mallory_h], [result_handle(UINT64)])
    request = gw.actors.operands_request(assignment, [mallory_h], requester, task_id=task)
    with pytest.raises(NoxError) as info:
        await gw.stub.GetOperands(request)
    _refused_as_tampered(info.value, mallory_h)


async def test_a_runner_binding_alices_k_to_its_output_is_refused(gw: GatewayNet) -> None:
    """A compromised runner, with its real registered key, submits Alice's (ciphertext, K,
    nonce) as its own output and binds it with a genuine signature. It cannot prove it made
    K (ECIES discarded Alice's k; a key proof of its own is for another handle and K): the
    gateway refuses the result, and the row planted by a database writer next to it is
    refused by the gateway on read and by every KMS node. Mallory learns nothing."""
    from bindfix import SALT, bind_task  # imported here: absent before bindings

    from nox.crypto.binding import prove_key
    from nox.gateway.bindings import evidence
    from nox.gateway.store import HandleRecord, RowBinding
    from nox.kms.wire import binding_to_proto

    alice_h, _, mallory = await _alice_and_mallory(gw)
    alice = _row(gw, alice_h)
    out, task = result_handle(UINT64), keccak256(b"the runner's task")
    assignment = gw.actors.assignment(task, [], [out])
    stolen = ecies.Ciphertext(alice["ciphertext"], alice["ephemeral_public_key"], alice["nonce"])
    (bound,) = bind_task(gw.actors.runner, DOMAIN, task, [(out, stolen, bytes(32))])
    # a genuine key proof, but for a K the runner made itself
    own, own_k = ecies.encrypt_keeping_scalar(gw.public.public_key, u64(0), out)
    del own
    borrowed = prove_key(DOMAIN, out, own_k)
    for key_proof in (b"", borrowed):
        result = SubmitResultPayload(
            result=TaskResult(
                task_id=task,
                assignment_hash=keccak256(assignment.payload),
                outputs=TaskOutputs(
                    ciphertexts=[
                        common_pb2.TypedCiphertext(
                            handle=out,
                            ciphertext=stolen.ciphertext,
                            ephemeral_public_key=stolen.ephemeral_public_key,
                            nonce=stolen.nonce,
                            value_tag=bytes(32),
                            value_tag_salt=SALT,
                            ephemeral_key_proof=key_proof,
                        )
                    ],
                    binding_signature=bound.signature,
                ),
            )
        )
        signed = sign_envelope(
            gw.actors.runner,
            result,
            domain=DOMAIN,
            audience=gw.actors.orchestrator.address,
            now=gw.clock.now,
        )
        execution = gateway_pb2.SignedExecution(assignment=assignment, result=signed)
        with pytest.raises(NoxError) as info:
            await gw.stub.StoreResults(gw.actors.store_request(task, [execution]))
        assert (info.value.code, info.value.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "BINDING_INVALID",
        )
        assert info.value.metadata["why"] == "KEY_PROOF_INVALID"
    assert await gw.ctx.store.get([out]) == {}
    # a database writer plants the row anyway, with the runner's genuine binding
    row = HandleRecord(
        out,
        stolen.ciphertext,
        stolen.ephemeral_public_key,
        stolen.nonce,
        bytes(32),
        binding=RowBinding(SALT, bound.signature, bound.proof, borrowed),
    )
    await gw.ctx.store.publish_task(task, [row])
    gw.acl.viewers.add((out, mallory.address))
    error, learnt = await _mallory_decrypts(gw, mallory, out, alice, alice_h)
    assert learnt is None, f"Mallory learnt Alice's value {learnt!r}"
    _refused_as_tampered(error, out)
    assert error is not None
    assert error.metadata["why"] == "KEY_PROOF_INVALID"
    (planted,) = await gw.ctx.store.require([out])
    requester = RequesterKey.generate_secp256k1()
    auth = authorization(mallory, requester, now=gw.clock.now, handles=[out])
    target = kms_pb2.DelegationTarget(
        handle=out,
        ephemeral_public_key=stolen.ephemeral_public_key,
        binding=binding_to_proto(evidence(planted)),  # type: ignore[arg-type]
    )
    payload = kms_pb2.DelegatePayload(
        epoch=gw.public.epoch,
        requester_key=auth.requester_key,
        targets=[target],
        user_authorization=auth,
    )
    for key, channel in zip(gw.kms.keys, gw.kms.channels, strict=True):
        envelope = sign_envelope(
            gw.key, payload, domain=DOMAIN, audience=key.address, now=gw.clock.now
        )
        with pytest.raises(NoxError) as info:
            await kms_pb2_grpc.KmsServiceStub(channel).Delegate(
                kms_pb2.DelegateRequest(envelope=envelope)
            )
        assert (info.value.code, info.value.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "BINDING_INVALID",
        )
