"""Test doubles and builders for the GatewayService tests.

Real: the gateway server and its gRPC stack, the store (SQLite file or PostgreSQL), the
envelopes, ECIES, the 2-of-3 KMS (three KmsServicers over real gRPC) and the fan-out.
Doubles: the registry (`FakeRegistry`, a dictionary behind the `NodeDirectory` protocol) and
the ACL (`FakeAcl`) in the unit suites — the end-to-end test uses the embedded chain — and
the runner and orchestrator sides, which these tests play themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from bindfix import SALT, bind_task

from nox.crypto import ecies
from nox.crypto.binding import prove_key
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.sealing import seal_input
from nox.crypto.tags import TagKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.errors import NoxError, PermissionDenied
from nox.handles import value_tag
from nox.kms.authorization import authorization_digest
from nox.kms.client import collect_partials, combine_targets
from nox.kms.wire import requester_key_to_proto
from nox.v1 import common_pb2, decryption_pb2, gateway_pb2, gateway_pb2_grpc
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskAssignment, TaskLimits, TaskOutputs, TaskResult

NOW = 1_800_000_000
CHAIN_ID = 31337
REGISTRY = bytes.fromhex("11" * 20)
COMPUTE = bytes.fromhex("22" * 20)
ACL = bytes.fromhex("33" * 20)
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=REGISTRY)
ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4
UINT64 = 11  # type code of uint64 (3 + 64/8)
BOOL = 0


class Clock:
    """A settable clock shared by the gateway, its store and the KMS nodes (Unix seconds)."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class FakeRegistry:
    """address -> role; answers like RegistryView.require for active, attested nodes."""

    roles: dict[bytes, int] = field(default_factory=dict)
    expired: set[bytes] = field(default_factory=set)
    calls: int = 0

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        self.calls += 1
        known = self.roles.get(address)
        if known is None:
            raise PermissionDenied("signer is not registered", reason="SIGNER_NOT_REGISTERED")
        if known != role:
            raise PermissionDenied("signer has another role", reason="ROLE_MISMATCH")
        if address in self.expired:
            raise PermissionDenied("registration expired", reason="REGISTRATION_EXPIRED")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        """Like `require`, but an expired registration still counts (RegistryView's rule)."""
        if address in self.expired and self.roles.get(address) == role:
            return
        self.require(address, role, now)

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.roles[key.address] = role
        return key


@dataclass
class FakeAcl:
    """viewers[(handle, account)] and publicly decryptable handles."""

    viewers: set[tuple[bytes, bytes]] = field(default_factory=set)
    public: set[bytes] = field(default_factory=set)

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return (handle, account) in self.viewers or handle in self.public

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return handle in self.public


def result_handle(type_code: int) -> bytes:
    """A random handle of this chain and type (as NoxCompute would derive one)."""
    return os.urandom(26) + CHAIN_ID.to_bytes(4, "big") + bytes([type_code, 0])


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


@dataclass
class Actors:
    """The signing parties the tests play: orchestrator, runners, and the gateway's address."""

    orchestrator: EnclaveKey
    runner: EnclaveKey
    gateway_address: bytes
    clock: Clock
    domain: Domain = DOMAIN
    # The runners' value-tag key (the deployment's, when the test knows the dealing).
    tag_key: TagKey = field(default_factory=lambda: TagKey(os.urandom(32)))

    def assignment(
        self,
        task_id: bytes,
        inputs: Sequence[bytes],
        outputs: Sequence[bytes],
        *,
        runner: EnclaveKey | None = None,
        signer: EnclaveKey | None = None,
        lease: int = 300,
        redundancy: int = 1,
        max_ciphertext_bytes: int = 4096,
    ) -> SignedEnvelope:
        runner = runner or self.runner
        payload = TaskAssignment(
            task_id=task_id,
            input_handles=list(inputs),
            output_handles=list(outputs),
            runner_address=runner.address,
            assigned_at=self.clock.now,
            lease_expires_at=self.clock.now + lease,
            attempt=1,
            limits=TaskLimits(
                max_operations=16,
                max_input_handles=16,
                max_output_handles=16,
                max_ciphertext_bytes=max_ciphertext_bytes,
                max_execution_seconds=60,
            ),
            redundancy=redundancy,
        )
        return sign_envelope(
            signer or self.orchestrator,
            payload,
            domain=self.domain,
            audience=runner.address,
            now=self.clock.now,
            ttl=600,
        )

    def operands_request(
        self,
        assignment: SignedEnvelope,
        handles: Sequence[bytes],
        requester: RequesterKey,
        *,
        task_id: bytes,
        runner: EnclaveKey | None = None,
        audience: bytes | None = None,
        ttl: int = 60,
        issued_at: int | None = None,
    ) -> gateway_pb2.GetOperandsRequest:
        payload = gateway_pb2.GetOperandsPayload(
            task_id=task_id,
            assignment=assignment,
            requester_key=requester_key_to_proto(requester.public),
            handles=list(handles),
        )
        env = sign_envelope(
            runner or self.runner,
            payload,
            domain=self.domain,
            audience=audience or self.gateway_address,
            now=self.clock.now if issued_at is None else issued_at,
            ttl=ttl,
        )
        return gateway_pb2.GetOperandsRequest(envelope=env)

    def execution(
        self,
        assignment: SignedEnvelope,
        task_id: bytes,
        values: Sequence[tuple[bytes, bytes]],
        kms_public_key: bytes,
        *,
        runner: EnclaveKey | None = None,
    ) -> gateway_pb2.SignedExecution:
        """The runner's signed result: each (handle, plaintext) encrypted under the KMS key."""
        outputs = []
        rows = []
        for handle, plaintext in values:
            ct, scalar = ecies.encrypt_keeping_scalar(kms_public_key, plaintext, handle)
            rows.append((handle, ct, value_tag(self.tag_key, handle, plaintext)))
            outputs.append(
                common_pb2.TypedCiphertext(
                    handle=handle,
                    ciphertext=ct.ciphertext,
                    ephemeral_public_key=ct.ephemeral_public_key,
                    nonce=ct.nonce,
                    value_tag=value_tag(self.tag_key, handle, plaintext),
                    value_tag_salt=SALT,
                    ephemeral_key_proof=prove_key(self.domain, handle, scalar),
                )
            )
        bindings = bind_task(runner or self.runner, self.domain, task_id, rows)
        result = SubmitResultPayload(
            result=TaskResult(
                task_id=task_id,
                assignment_hash=keccak256(assignment.payload),
                outputs=TaskOutputs(ciphertexts=outputs, binding_signature=bindings[0].signature),
            )
        )
        signed = sign_envelope(
            runner or self.runner,
            result,
            domain=self.domain,
            audience=self.orchestrator.address,
            now=self.clock.now,
        )
        return gateway_pb2.SignedExecution(assignment=assignment, result=signed)

    def store_request(
        self,
        task_id: bytes,
        executions: Sequence[gateway_pb2.SignedExecution],
        *,
        signer: EnclaveKey | None = None,
    ) -> gateway_pb2.StoreResultsRequest:
        payload = gateway_pb2.StoreResultsPayload(task_id=task_id, executions=list(executions))
        env = sign_envelope(
            signer or self.orchestrator,
            payload,
            domain=self.domain,
            audience=self.gateway_address,
            now=self.clock.now,
        )
        return gateway_pb2.StoreResultsRequest(envelope=env)


def authorization(
    user: EnclaveKey,
    requester: RequesterKey,
    *,
    now: int,
    handles: Sequence[bytes] = (),
    window: int = 600,
    not_before: int | None = None,
    domain: Domain = DOMAIN,
) -> decryption_pb2.DecryptionAuthorization:
    """A user's signed DecryptionAuthorization (EOA)."""
    start = now - 10 if not_before is None else not_before
    auth = decryption_pb2.DecryptionAuthorization(
        chain_id=domain.chain_id,
        user_address=user.address,
        requester_key=requester_key_to_proto(requester.public),
        handles=list(handles),
        not_before=start,
        expires_at=start + window,
    )
    auth.signature = user.sign_digest(authorization_digest(domain, auth))
    return auth


def open_material(
    ciphertexts: Sequence[common_pb2.TypedCiphertext],
    kms_envelopes: Sequence[SignedEnvelope],
    requester: RequesterKey,
    *,
    public: ThresholdPublicKey,
    gateway: bytes,
    registry: FakeRegistry | object,
    now: int,
    domain: Domain = DOMAIN,
) -> list[bytes]:
    """What a runner or the SDK does with operands: verify the KMS answers and the DLEQ
    proofs, combine t partials, decrypt each ciphertext with its handle as associated data."""
    targets = [(bytes(c.handle), bytes(c.ephemeral_public_key)) for c in ciphertexts]
    collected = collect_partials(
        kms_envelopes,
        targets=targets,
        public=public,
        requester_kind=requester.public.kind,
        domain=domain,
        audience=gateway,
        registry=registry,  # type: ignore[arg-type]
        now=now,
    )
    assert not collected.rejected, collected.rejected
    combos = combine_targets(collected, targets=targets, public=public, requester_key=requester)
    return [
        ecies.decrypt_with_shared_point(
            combo.shared_point,
            ecies.Ciphertext(c.ciphertext, c.ephemeral_public_key, c.nonce),
            bytes(c.handle),
        )
        for combo, c in zip(combos, ciphertexts, strict=True)
    ]


def open_gateway_answer(
    envelope: SignedEnvelope,
    message_type: type,
    *,
    gateway: bytes,
    audience: bytes,
    now: int,
    domain: Domain = DOMAIN,
) -> object:
    """Verify the gateway's signed answer (its signer is the gateway) and parse it."""
    return verify_envelope(
        envelope,
        message_type,
        domain=domain,
        audience=audience,
        now=now,
        replay=MemoryReplayCache(),
        expected_signer=gateway,
    ).message


def stub(channel: grpc.aio.Channel) -> gateway_pb2_grpc.GatewayServiceStub:
    return gateway_pb2_grpc.GatewayServiceStub(channel)


OWNER = bytes.fromhex("a1" * 20)
APP = bytes.fromhex("b2" * 20)


def encrypt_request(to: bytes, **overrides: object) -> gateway_pb2.EncryptInputRequest:
    """An EncryptInputRequest whose plaintext (u64(42) unless overridden) is sealed to the
    gateway enclave public key `to` for the request's own chain, type, owner and app, as
    the SDK sends it. Fields that `sealed_aad` cannot take (a 19-byte owner...) are sealed
    with a placeholder: the gateway refuses such a request before opening anything."""
    fields: dict[str, object] = {
        "chain_id": CHAIN_ID,
        "type_code": UINT64,
        "owner_address": OWNER,
        "application_address": APP,
    }
    plaintext = overrides.pop("plaintext", u64(42))
    assert isinstance(plaintext, bytes)
    fields.update(overrides)
    request = gateway_pb2.EncryptInputRequest(**fields)  # type: ignore[arg-type]
    try:
        sealed = seal_input(
            to,
            plaintext,
            chain_id=request.chain_id,
            type_code=request.type_code,
            owner=request.owner_address,
            application=request.application_address,
        )
    except NoxError:
        sealed = seal_input(
            to, plaintext, chain_id=0, type_code=0, owner=bytes(20), application=bytes(20)
        )
    request.sealed_plaintext.CopyFrom(sealed)
    return request


async def expect(call: object, code: grpc.StatusCode, reason: str) -> NoxError:
    with pytest.raises(NoxError) as info:
        await call  # type: ignore[misc]
    assert (info.value.code, info.value.reason) == (code, reason), str(info.value)
    return info.value
