"""KmsService over real gRPC (three nodes, 2-of-3): authorization, delegation, no leaks.

The registry is a dictionary behind the `NodeDirectory` interface (the real RegistryView
belongs to the chain layer and is not what these tests test); envelopes, proofs, sealing
and the servers are real.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
from bindfix import bound_proto
from eth_account import Account
from eth_account.messages import encode_typed_data

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import Dealing, KeyShare, ThresholdPublicKey, deal
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.errors import NoxError, PermissionDenied
from nox.kms.authorization import authorization_digest
from nox.kms.client import collect_partials, combine_targets
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME, KmsServicer
from nox.kms.wire import public_key_from_proto, requester_key_to_proto
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.v1 import decryption_pb2, kms_pb2, kms_pb2_grpc
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.gateway_pb2 import GetOperandsPayload
from nox.v1.task_pb2 import TaskAssignment

NOW = 1_800_000_000
DOMAIN = Domain(chain_id=31337, verifying_contract=bytes.fromhex("11" * 20))
ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4


@dataclass
class FakeRegistry:
    """address -> role; what RegistryView.require answers for registered, attested nodes."""

    roles: dict[bytes, int] = field(default_factory=dict)

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        known = self.roles.get(address)
        if known is None:
            raise PermissionDenied("signer is not registered", reason="SIGNER_NOT_REGISTERED")
        if known != role:
            raise PermissionDenied("signer has another role", reason="ROLE_MISMATCH")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        self.require(address, role, now)


@dataclass
class Network:
    registry: FakeRegistry
    dealing: Dealing
    public: ThresholdPublicKey
    kms_keys: list[EnclaveKey]
    stubs: list[kms_pb2_grpc.KmsServiceAsyncStub]
    servers: list[RpcServer]
    gateway: EnclaveKey
    runner: EnclaveKey
    orchestrator: EnclaveKey
    shares: list[KeyShare]


def _enrol(registry: FakeRegistry, role: int) -> EnclaveKey:
    key = EnclaveKey.generate()
    registry.roles[key.address] = role
    return key


@pytest.fixture
async def net() -> AsyncIterator[Network]:
    registry = FakeRegistry()
    dealing = deal(2, 3)
    kms_keys = [_enrol(registry, KMS) for _ in range(3)]
    servers: list[RpcServer] = []
    stubs: list[kms_pb2_grpc.KmsServiceAsyncStub] = []
    channels: list[grpc.aio.Channel] = []
    try:
        for share, key in zip(dealing.shares, kms_keys, strict=True):
            servicer = KmsServicer(
                share=LoadedShare(share, dealing.public),
                enclave_key=key,
                domain=DOMAIN,
                registry=registry,
                replay=MemoryReplayCache(),
                clock=lambda: NOW,
                is_publicly_decryptable=lambda handle: handle.startswith(b"\xee"),
            )
            spec = ServiceSpec(
                SERVICE_NAME, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer
            )
            server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
            servers.append(server)
            await server.start()
            channel = create_channel(server.target)
            channels.append(channel)
            # The async stub class exists only in the type stubs; at run time it is this one.
            stubs.append(cast(Any, kms_pb2_grpc.KmsServiceStub(channel)))
        network = Network(
            registry=registry,
            dealing=dealing,
            public=dealing.public,
            kms_keys=kms_keys,
            stubs=stubs,
            servers=servers,
            gateway=_enrol(registry, GATEWAY),
            runner=_enrol(registry, RUNNER),
            orchestrator=_enrol(registry, ORCHESTRATOR),
            shares=list(dealing.shares),
        )
        yield network
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)


def _ciphertexts(net: Network, count: int = 2) -> list[tuple[bytes, ecies.Ciphertext, bytes]]:
    out = []
    for i in range(count):
        handle = os.urandom(32)
        plaintext = bytes([i]) * 32
        out.append((handle, ecies.encrypt(net.public.public_key, plaintext, handle), plaintext))
    return out


def _runner_request(
    net: Network,
    requester: RequesterKey,
    handles: Sequence[bytes],
    *,
    inputs: Sequence[bytes] | None = None,
    orchestrator: EnclaveKey | None = None,
    runner_address: bytes | None = None,
    lease_expires_at: int = NOW + 300,
) -> SignedEnvelope:
    assignment = TaskAssignment(
        task_id=b"\x07" * 32,
        input_handles=list(handles if inputs is None else inputs),
        runner_address=runner_address or net.runner.address,
        assigned_at=NOW - 10,
        lease_expires_at=lease_expires_at,
        attempt=1,
    )
    signed_assignment = sign_envelope(
        orchestrator or net.orchestrator,
        assignment,
        domain=DOMAIN,
        audience=net.runner.address,
        now=NOW - 10,
        ttl=600,
    )
    operands = GetOperandsPayload(
        task_id=b"\x07" * 32,
        assignment=signed_assignment,
        requester_key=requester_key_to_proto(requester.public),
        handles=list(handles),
    )
    return sign_envelope(net.runner, operands, domain=DOMAIN, audience=net.gateway.address, now=NOW)


def _payload(
    net: Network,
    requester: RequesterKey,
    cts: Sequence[tuple[bytes, ecies.Ciphertext, bytes]],
    **authorization: Any,
) -> kms_pb2.DelegatePayload:
    return kms_pb2.DelegatePayload(
        epoch=0,
        requester_key=requester_key_to_proto(requester.public),
        targets=[
            kms_pb2.DelegationTarget(
                handle=h,
                ephemeral_public_key=ct.ephemeral_public_key,
                binding=bound_proto(net.gateway, DOMAIN, h, ct),
            )
            for h, ct, _ in cts
        ],
        **authorization,
    )


async def _ask(
    net: Network,
    payload: kms_pb2.DelegatePayload,
    nodes: Sequence[int] = (0, 1, 2),
    signer: EnclaveKey | None = None,
) -> list[SignedEnvelope]:
    answers = []
    for node in nodes:
        envelope = sign_envelope(
            signer or net.gateway,
            payload,
            domain=DOMAIN,
            audience=net.kms_keys[node].address,
            now=NOW,
        )
        response = await net.stubs[node].Delegate(kms_pb2.DelegateRequest(envelope=envelope))
        answers.append(response.envelope)
    return answers


def _decrypt(
    net: Network,
    requester: RequesterKey,
    cts: Sequence[tuple[bytes, ecies.Ciphertext, bytes]],
    answers: Sequence[SignedEnvelope],
    payload: kms_pb2.DelegatePayload,
) -> tuple[list[bytes], list[tuple[int, ...]]]:
    targets = [(h, ct.ephemeral_public_key) for h, ct, _ in cts]
    collected = collect_partials(
        answers,
        targets=targets,
        public=net.public,
        requester_kind=requester.public.kind,
        domain=DOMAIN,
        audience=net.gateway.address,
        registry=net.registry,
        now=NOW,
        request_hash=keccak256(payload.SerializeToString()),
    )
    combos = combine_targets(
        collected,
        targets=targets,
        public=net.public,
        requester_key=requester,
        stop_at_threshold=False,
    )
    plaintexts = [
        ecies.decrypt_with_shared_point(c.shared_point, ct, h)
        for c, (h, ct, _) in zip(combos, cts, strict=True)
    ]
    return plaintexts, [c.bad_indices for c in combos]


async def test_public_key_is_served(net: Network) -> None:
    for i, stub in enumerate(net.stubs, start=1):
        response = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest())
        assert response.node_index == i
        assert public_key_from_proto(response) == net.public


@pytest.mark.parametrize("kind", ["secp256k1", "rsa"])
async def test_runner_delegation_end_to_end_with_one_node_stopped(net: Network, kind: str) -> None:
    requester = (
        RequesterKey.generate_secp256k1() if kind == "secp256k1" else RequesterKey.generate_rsa()
    )
    cts = _ciphertexts(net, 3)
    payload = _payload(
        net, requester, cts, runner_request=_runner_request(net, requester, [h for h, _, _ in cts])
    )
    await net.servers[1].stop(0)
    with pytest.raises(NoxError):  # node 2 is down
        await _ask(net, payload, nodes=[1])
    answers = await _ask(net, payload, nodes=[0, 2])
    plaintexts, bad = _decrypt(net, requester, cts, answers, payload)
    assert plaintexts == [p for _, _, p in cts]
    assert bad == [(), (), ()]


async def test_a_node_with_a_wrong_share_is_named_and_t_honest_nodes_suffice(
    net: Network,
) -> None:
    # Node 3 is compromised: it serves with a share that is not the one behind PK_3.
    lying = KmsServicer(
        share=LoadedShare(dataclasses.replace(net.shares[2], value=424242), net.public),
        enclave_key=net.kms_keys[2],
        domain=DOMAIN,
        registry=net.registry,
        replay=MemoryReplayCache(),
        clock=lambda: NOW,
    )
    requester = RequesterKey.generate_secp256k1()
    cts = _ciphertexts(net, 2)
    payload = _payload(
        net, requester, cts, runner_request=_runner_request(net, requester, [h for h, _, _ in cts])
    )
    honest = await _ask(net, payload, nodes=[0, 1])
    envelope = sign_envelope(
        net.gateway, payload, domain=DOMAIN, audience=net.kms_keys[2].address, now=NOW
    )
    lie = lying.delegate(kms_pb2.DelegateRequest(envelope=envelope)).envelope
    plaintexts, bad = _decrypt(net, requester, cts, [lie, *honest], payload)
    assert plaintexts == [p for _, _, p in cts]
    assert bad == [(3,), (3,)]
    with pytest.raises(QuorumNotReached) as info:
        _decrypt(net, requester, cts, [lie, honest[0]], payload)
    assert info.value.bad_nodes == (3,)


def _user_authorization(
    requester: RequesterKey,
    handles: Sequence[bytes],
    *,
    signer: Any = None,
    not_before: int = NOW - 10,
    expires_at: int = NOW + 600,
) -> decryption_pb2.DecryptionAuthorization:
    user = Account.create()
    auth = decryption_pb2.DecryptionAuthorization(
        chain_id=DOMAIN.chain_id,
        user_address=bytes.fromhex(user.address[2:]),
        requester_key=requester_key_to_proto(requester.public),
        handles=list(handles),
        not_before=not_before,
        expires_at=expires_at,
    )
    account = signer or user
    signed = account.unsafe_sign_hash(authorization_digest(DOMAIN, auth))
    auth.signature = signed.signature
    return auth


def test_authorization_digest_matches_eth_account() -> None:
    requester = RequesterKey.generate_secp256k1()
    auth = _user_authorization(requester, [b"\x01" * 32, b"\x02" * 32])
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "DecryptionAuthorization": [
                {"name": "user", "type": "address"},
                {"name": "keyKind", "type": "uint8"},
                {"name": "publicKey", "type": "bytes"},
                {"name": "handles", "type": "bytes32[]"},
                {"name": "notBefore", "type": "uint64"},
                {"name": "expiresAt", "type": "uint64"},
            ],
        },
        "primaryType": "DecryptionAuthorization",
        "domain": {
            "name": "Nox",
            "version": "1",
            "chainId": DOMAIN.chain_id,
            "verifyingContract": "0x" + DOMAIN.verifying_contract.hex(),
        },
        "message": {
            "user": "0x" + auth.user_address.hex(),
            "keyKind": auth.requester_key.kind,
            "publicKey": auth.requester_key.public_key,
            "handles": list(auth.handles),
            "notBefore": auth.not_before,
            "expiresAt": auth.expires_at,
        },
    }
    signable = encode_typed_data(full_message=typed)
    expected = keccak256(b"\x19" + signable.version + signable.header + signable.body)
    assert authorization_digest(DOMAIN, auth) == expected


async def test_user_and_public_decryption(net: Network) -> None:
    requester = RequesterKey.generate_secp256k1()
    cts = _ciphertexts(net, 2)
    handles = [h for h, _, _ in cts]
    payload = _payload(
        net, requester, cts, user_authorization=_user_authorization(requester, handles)
    )
    answers = await _ask(net, payload, nodes=[0, 2])
    assert _decrypt(net, requester, cts, answers, payload)[0] == [p for _, _, p in cts]

    public_handle = b"\xee" + os.urandom(31)
    ct = ecies.encrypt(net.public.public_key, b"public", public_handle)
    pub_cts = [(public_handle, ct, b"public")]
    payload = _payload(
        net, requester, pub_cts, public_decryption=kms_pb2.PublicDecryptionAuthorization()
    )
    answers = await _ask(net, payload, nodes=[1, 2])
    assert _decrypt(net, requester, pub_cts, answers, payload)[0] == [b"public"]


async def _expect(
    net: Network,
    payload: kms_pb2.DelegatePayload,
    code: grpc.StatusCode,
    reason: str,
    signer: EnclaveKey | None = None,
) -> None:
    with pytest.raises(NoxError) as info:
        await _ask(net, payload, nodes=[0], signer=signer)
    assert (info.value.code, info.value.reason) == (code, reason)


async def test_unauthorized_requests_are_permission_denied(net: Network) -> None:
    denied = grpc.StatusCode.PERMISSION_DENIED
    requester = RequesterKey.generate_secp256k1()
    cts = _ciphertexts(net, 2)
    handles = [h for h, _, _ in cts]
    ok_request = _runner_request(net, requester, handles)
    # An unregistered signer, and a runner posing as the gateway.
    payload = _payload(net, requester, cts, runner_request=ok_request)
    await _expect(net, payload, denied, "SIGNER_NOT_REGISTERED", signer=EnclaveKey.generate())
    await _expect(net, payload, denied, "ROLE_MISMATCH", signer=net.runner)
    # Runner request problems.
    stranger = EnclaveKey.generate()
    cases = {
        "DELEGATION_NOT_AUTHORIZED": [
            _runner_request(net, requester, handles, runner_address=stranger.address),
            _runner_request(net, RequesterKey.generate_secp256k1(), handles),  # other key
        ],
        "ROLE_MISMATCH": [_runner_request(net, requester, handles, orchestrator=net.gateway)],
        "SIGNER_NOT_REGISTERED": [_runner_request(net, requester, handles, orchestrator=stranger)],
    }
    for reason, requests in cases.items():
        for runner_request in requests:
            payload = _payload(net, requester, cts, runner_request=runner_request)
            await _expect(net, payload, denied, reason)
    # A handle outside the assignment; an assignment whose lease is over (error.proto reasons).
    outside = _runner_request(net, requester, handles, inputs=handles[:1])
    payload = _payload(net, requester, cts, runner_request=outside)
    await _expect(net, payload, denied, "HANDLE_NOT_IN_ASSIGNMENT")
    expired = _runner_request(net, requester, handles, lease_expires_at=NOW - 1)
    payload = _payload(net, requester, cts, runner_request=expired)
    await _expect(net, payload, grpc.StatusCode.DEADLINE_EXCEEDED, "LEASE_EXPIRED")
    # The runner asked only for the first handle; the gateway asks the KMS for both.
    payload = _payload(
        net,
        requester,
        cts,
        runner_request=_runner_request(net, requester, handles[:1], inputs=handles),
    )
    await _expect(net, payload, denied, "DELEGATION_NOT_AUTHORIZED")
    # No authorization at all; a public decryption of a private handle.
    await _expect(net, _payload(net, requester, cts), denied, "DELEGATION_NOT_AUTHORIZED")
    payload = _payload(
        net, requester, cts, public_decryption=kms_pb2.PublicDecryptionAuthorization()
    )
    await _expect(net, payload, denied, "NOT_PUBLICLY_DECRYPTABLE")
    # User authorizations: other handles listed, someone else's signature, expired.
    unauth = grpc.StatusCode.UNAUTHENTICATED
    for auth, code, reason in [
        (_user_authorization(requester, [os.urandom(32)]), denied, "HANDLE_NOT_AUTHORIZED"),
        (
            _user_authorization(requester, handles, signer=Account.create()),
            unauth,
            "AUTHORIZATION_INVALID",
        ),
        (
            _user_authorization(requester, handles, not_before=NOW - 700, expires_at=NOW - 100),
            unauth,
            "AUTHORIZATION_EXPIRED",
        ),
    ]:
        await _expect(net, _payload(net, requester, cts, user_authorization=auth), code, reason)


async def test_malformed_and_replayed_requests(net: Network) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    requester = RequesterKey.generate_secp256k1()
    cts = _ciphertexts(net, 1)
    runner_request = _runner_request(net, requester, [cts[0][0]])
    payload = _payload(net, requester, cts, runner_request=runner_request)
    payload.targets[0].ephemeral_public_key = b"\x02" + b"\xff" * 32
    await _expect(net, payload, invalid, "INVALID_POINT")
    payload = _payload(net, requester, cts, runner_request=runner_request)
    payload.requester_key.public_key = b"\x05" * 33
    await _expect(net, payload, invalid, "INVALID_REQUESTER_KEY")
    payload = _payload(net, requester, [], runner_request=runner_request)
    await _expect(net, payload, invalid, "INVALID_ARGUMENT")
    payload = _payload(net, requester, cts, runner_request=runner_request)
    payload.epoch = 5
    await _expect(net, payload, grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION")
    # The same signed request twice: the second is a replay.
    payload = _payload(net, requester, cts, runner_request=runner_request)
    envelope = sign_envelope(
        net.gateway, payload, domain=DOMAIN, audience=net.kms_keys[0].address, now=NOW
    )
    await net.stubs[0].Delegate(kms_pb2.DelegateRequest(envelope=envelope))
    with pytest.raises(NoxError) as info:
        await net.stubs[0].Delegate(kms_pb2.DelegateRequest(envelope=envelope))
    assert info.value.reason == "NONCE_REPLAYED"


async def test_nothing_about_the_shares_leaks_into_logs_or_errors(
    net: Network, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    requester = RequesterKey.generate_secp256k1()
    cts = _ciphertexts(net, 1)
    messages = []
    good = _payload(
        net, requester, cts, runner_request=_runner_request(net, requester, [cts[0][0]])
    )
    await _ask(net, good)
    bad = _payload(net, requester, cts, runner_request=_runner_request(net, requester, []))
    for signer in (None, EnclaveKey.generate()):
        with pytest.raises(NoxError) as info:
            await _ask(net, bad, signer=signer)
        messages += [str(info.value), repr(info.value), repr(info.value.metadata)]
    captured = capsys.readouterr()
    text = "\n".join([caplog.text, captured.out, captured.err, *messages, repr(net.servers)])
    for share in net.shares:
        assert share.secret_bytes().hex() not in text
        assert share.secret_bytes().hex().upper() not in text
        assert str(share.value) not in text
