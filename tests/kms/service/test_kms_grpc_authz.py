"""Who gets refused, with which code and reason (DESIGN §6, error.proto), over real gRPC."""

from __future__ import annotations

import os
from collections.abc import Callable

import grpc
import pytest
from conftest import KmsNet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from eth_account import Account
from kms_service_support import Target, delegate_payload, make_targets

from nox.chain.exceptions import NodeNotAuthorized
from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.kms.wire import binding_to_proto
from nox.v1 import common_pb2, kms_pb2

pytestmark = pytest.mark.integration

DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def _refused(
    kms: KmsNet, request: kms_pb2.DelegateRequest, node: int = 0
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(NoxError) as info:
        await kms.stub(node).Delegate(request)
    return info.value.code, info.value.reason


def _registry_reason(kms: KmsNet, address: bytes, role: int) -> str:
    """What the registry itself answers for this signer and role (the KMS passes it on)."""
    with pytest.raises(NodeNotAuthorized) as info:
        kms.chain.view.require(address, role, kms.actors.now())
    return info.value.reason


async def test_callers_that_are_not_an_active_gateway(kms: KmsNet) -> None:
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 1, producer=kms.actors)
    payload = delegate_payload(
        requester,
        targets,
        runner_request=kms.actors.runner_request(requester, [targets[0].handle]),
    )
    stranger = EnclaveKey.generate()
    for signer, reason in [
        (stranger, "SIGNER_NOT_REGISTERED"),  # not registered at all
        (kms.actors.runner, "ROLE_MISMATCH"),  # a runner posing as the gateway
        (kms.actors.kms[1], "ROLE_MISMATCH"),  # another KMS node
    ]:
        # The KMS passes the registry view's own verdict on.
        assert _registry_reason(kms, signer.address, 3) == reason
        request = kms.actors.sign_for(0, payload, signer=signer)
        assert await _refused(kms, request) == (DENIED, reason)


async def test_runner_requests_without_a_covering_assignment(kms: KmsNet) -> None:
    actors = kms.actors
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 2, producer=kms.actors)
    handles = [t.handle for t in targets]
    stranger = EnclaveKey.generate()
    other_runner_reason = _registry_reason(kms, stranger.address, 2)
    cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
        # a handle outside the assignment's inputs
        (
            lambda: actors.runner_request(requester, handles, inputs=handles[:1]),
            DENIED,
            "HANDLE_NOT_IN_ASSIGNMENT",
        ),
        # the runner asked for one handle, the gateway asks the KMS for two
        (
            lambda: actors.runner_request(requester, handles[:1], inputs=handles),
            DENIED,
            "DELEGATION_NOT_AUTHORIZED",
        ),
        # the assignment is for another runner
        (
            lambda: actors.runner_request(requester, handles, runner_address=stranger.address),
            DENIED,
            "DELEGATION_NOT_AUTHORIZED",
        ),
        # the runner request and the assignment name different tasks
        (
            lambda: actors.runner_request(requester, handles, task_id=b"\x08" * 32),
            DENIED,
            "DELEGATION_NOT_AUTHORIZED",
        ),
        # the partials would go to another key than the runner's
        (
            lambda: actors.runner_request(RequesterKey.generate_secp256k1(), handles),
            DENIED,
            "DELEGATION_NOT_AUTHORIZED",
        ),
        # the "assignment" is signed by the gateway, not an orchestrator
        (
            lambda: actors.runner_request(requester, handles, orchestrator=actors.gateway),
            DENIED,
            _registry_reason(kms, actors.gateway.address, 1),
        ),
        # the "runner" is not registered
        (
            lambda: actors.runner_request(requester, handles, runner=stranger),
            DENIED,
            other_runner_reason,
        ),
        # the lease is over
        (
            lambda: actors.runner_request(requester, handles, lease=0),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "LEASE_EXPIRED",
        ),
    ]
    for make, code, reason in cases:
        payload = delegate_payload(requester, targets, runner_request=make())
        assert await _refused(kms, actors.sign_for(0, payload)) == (code, reason)


async def test_user_requests_need_a_valid_authorization(kms: KmsNet) -> None:
    actors = kms.actors
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 2, producer=kms.actors)
    handles = [t.handle for t in targets]
    now = actors.now()
    cases = [
        # no authorization at all
        (delegate_payload(requester, targets), DENIED, "DELEGATION_NOT_AUTHORIZED"),
        # an authorization limited to other handles
        (
            delegate_payload(
                requester,
                targets,
                user_authorization=actors.user_authorization(requester, [os.urandom(32)]),
            ),
            DENIED,
            "HANDLE_NOT_AUTHORIZED",
        ),
        # an authorization for another requester key
        (
            delegate_payload(
                requester,
                targets,
                user_authorization=actors.user_authorization(
                    RequesterKey.generate_secp256k1(), handles
                ),
            ),
            DENIED,
            "DELEGATION_NOT_AUTHORIZED",
        ),
        # signed by someone else than its user
        (
            delegate_payload(
                requester,
                targets,
                user_authorization=actors.user_authorization(
                    requester, handles, signer=Account.create()
                ),
            ),
            UNAUTHENTICATED,
            "AUTHORIZATION_INVALID",
        ),
        # expired
        (
            delegate_payload(
                requester,
                targets,
                user_authorization=actors.user_authorization(
                    requester, handles, not_before=now - 700, expires_at=now - 100
                ),
            ),
            UNAUTHENTICATED,
            "AUTHORIZATION_EXPIRED",
        ),
        # a window longer than an hour
        (
            delegate_payload(
                requester,
                targets,
                user_authorization=actors.user_authorization(
                    requester, handles, not_before=now - 10, expires_at=now + 3600
                ),
            ),
            INVALID,
            "AUTHORIZATION_WINDOW_INVALID",
        ),
        # a public decryption of a handle that is not public
        (
            delegate_payload(
                requester, targets, public_decryption=kms_pb2.PublicDecryptionAuthorization()
            ),
            DENIED,
            "NOT_PUBLICLY_DECRYPTABLE",
        ),
    ]
    for payload, code, reason in cases:
        assert await _refused(kms, actors.sign_for(0, payload)) == (code, reason)


def _rsa_key(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_malformed_keys_and_requests_are_invalid_argument(kms: KmsNet) -> None:
    actors = kms.actors
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 1, producer=kms.actors)
    handles = [targets[0].handle]

    def payload(targets: list[Target] = targets) -> kms_pb2.DelegatePayload:
        return delegate_payload(
            requester, targets, runner_request=actors.runner_request(requester, handles)
        )

    bad_k = payload()
    bad_k.targets[0].ephemeral_public_key = b"\x02" + b"\xff" * 32  # x beyond the field
    bad_point = payload()
    bad_point.requester_key.public_key = b"\x05" + b"\x01" * 32
    short_rsa = payload()
    short_rsa.requester_key.CopyFrom(
        common_pb2.RequesterKey(
            kind=common_pb2.REQUESTER_KEY_KIND_RSA_OAEP_SHA256, public_key=_rsa_key(1024)
        )
    )
    unknown_kind = payload()
    unknown_kind.requester_key.kind = 7  # type: ignore[assignment]
    short_handle = payload()
    short_handle.targets[0].handle = handles[0][:31]
    no_targets = payload([])
    wrong_epoch = payload()
    wrong_epoch.epoch = kms.keys.public.epoch + 1
    too_many = delegate_payload(
        requester, targets * 257, runner_request=actors.runner_request(requester, handles)
    )
    for request_payload, code, reason in [
        (bad_k, INVALID, "INVALID_POINT"),
        (bad_point, INVALID, "INVALID_REQUESTER_KEY"),
        (short_rsa, INVALID, "INVALID_REQUESTER_KEY"),
        (unknown_kind, INVALID, "INVALID_REQUESTER_KEY"),
        (short_handle, INVALID, "INVALID_HANDLE"),
        (no_targets, INVALID, "INVALID_ARGUMENT"),
        (wrong_epoch, grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
        (too_many, grpc.StatusCode.RESOURCE_EXHAUSTED, "BATCH_TOO_LARGE"),
    ]:
        assert await _refused(kms, actors.sign_for(0, request_payload)) == (code, reason)

    # Bytes that are not a DelegatePayload, correctly signed; another payload type.
    request = actors.sign_for(0, payload())
    request.envelope.CopyFrom(actors.resigned(request.envelope, b"\xff\xff\xff"))
    assert await _refused(kms, request) == (INVALID, "ENVELOPE_MALFORMED")
    other_type = sign_envelope(
        actors.gateway,
        kms_pb2.GetPublicKeyRequest(),
        domain=actors.domain,
        audience=actors.kms[0].address,
        now=actors.now(),
    )
    request = kms_pb2.DelegateRequest(envelope=other_type)
    assert await _refused(kms, request) == (INVALID, "PAYLOAD_TYPE_MISMATCH")
    assert await _refused(kms, kms_pb2.DelegateRequest()) == (INVALID, "ENVELOPE_MALFORMED")


async def test_replayed_expired_and_misaddressed_requests(kms: KmsNet) -> None:
    actors = kms.actors
    requester = RequesterKey.generate_secp256k1()
    targets = make_targets(kms.keys.public, 1, producer=kms.actors)
    payload = delegate_payload(
        requester,
        targets,
        runner_request=actors.runner_request(requester, [targets[0].handle]),
    )
    request = actors.sign_for(0, payload)
    await kms.stub(0).Delegate(request)
    assert await _refused(kms, request) == (UNAUTHENTICATED, "NONCE_REPLAYED")
    # The same payload signed anew for each node is served by each (nonces are per envelope).
    for node in (1, 2):
        await kms.stub(node).Delegate(actors.sign_for(node, payload))
    expired = actors.sign_for(0, payload, issued_at=actors.now() - 120, ttl=60)
    assert await _refused(kms, expired) == (UNAUTHENTICATED, "ENVELOPE_EXPIRED")
    misaddressed = actors.sign_for(1, payload)
    assert await _refused(kms, misaddressed, node=0) == (DENIED, "WRONG_AUDIENCE")


async def test_targets_without_a_valid_producer_binding(kms: KmsNet) -> None:
    """For each of the three authorizations, a target is delegated only under a binding
    that covers its (handle, K) and is signed by a registered gateway or runner."""
    from bindfix import bind_task, bound_proto

    actors = kms.actors
    requester = RequesterKey.generate_secp256k1()
    good, other = make_targets(kms.keys.public, 2, producer=actors)
    kms.public_handles.add(good.handle)  # so the public decryption is authorized as well
    ct = good.ciphertext
    stranger = EnclaveKey.generate()
    as_runner = bind_task(actors.gateway, actors.domain, os.urandom(32), [(good.handle, ct, b"")])
    cases: list[tuple[common_pb2.HandleBinding | None, str]] = [
        (None, "BINDING_MISSING"),
        (other.binding, "BINDING_INVALID"),  # another handle's binding
        (bound_proto(stranger, actors.domain, good.handle, ct), "BINDING_INVALID"),
        (bound_proto(actors.runner, actors.domain, good.handle, ct), "BINDING_INVALID"),
        (binding_to_proto(as_runner[0]), "BINDING_INVALID"),  # a gateway is not a runner
    ]
    authorizations: list[Callable[[Target], dict[str, object]]] = [
        lambda t: {"runner_request": actors.runner_request(requester, [t.handle])},
        lambda t: {"user_authorization": actors.user_authorization(requester, [t.handle])},
        lambda t: {"public_decryption": kms_pb2.PublicDecryptionAuthorization()},
    ]
    for binding, reason in cases:
        target = Target(good.handle, ct, good.plaintext, binding)
        for authorization in authorizations:
            payload = delegate_payload(requester, [target], **authorization(target))  # type: ignore[arg-type]
            request = actors.sign_for(0, payload)
            assert await _refused(kms, request) == (DENIED, reason), reason
    # the same target with its own binding is served
    payload = delegate_payload(
        requester, [good], runner_request=actors.runner_request(requester, [good.handle])
    )
    await kms.stub(0).Delegate(actors.sign_for(0, payload))
    # a K swapped in under the right handle's binding
    swapped = Target(good.handle, other.ciphertext, good.plaintext, good.binding)
    payload = delegate_payload(
        requester, [swapped], runner_request=actors.runner_request(requester, [good.handle])
    )
    assert await _refused(kms, actors.sign_for(0, payload)) == (DENIED, "BINDING_INVALID")
