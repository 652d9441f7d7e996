"""Helpers of the KMS service tests: actors on a real registry, signed requests, the client side.

Every actor (gateway, runner, orchestrator, the three KMS nodes) is an enclave registered in
NoxRegistry on the embedded EVM with a simulated-TDX quote; the KMS nodes check them through
the chain layer's `RegistryView`, which re-verifies each quote's DCAP chain off-chain.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bindfix import bound_proto
from eth_account import Account
from eth_account.signers.local import LocalAccount

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import envelope_signing_digest, sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.kms.authorization import authorization_digest
from nox.kms.authz import NodeDirectory
from nox.kms.client import collect_partials, combine_targets
from nox.kms.wire import requester_key_to_proto
from nox.v1 import common_pb2, decryption_pb2, kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.gateway_pb2 import GetOperandsPayload
from nox.v1.task_pb2 import TaskAssignment

ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4
TASK_ID = b"\x07" * 32


def enclave_key(account: LocalAccount) -> EnclaveKey:
    """The EnclaveKey of a registered enclave account."""
    return EnclaveKey.from_bytes(bytes(account.key))


@dataclass(frozen=True)
class Target:
    """A stored ciphertext: handle, the ECIES ciphertext under PK, what it hides, and the
    producer binding a gateway signed for it (None: unbound)."""

    handle: bytes
    ciphertext: ecies.Ciphertext
    plaintext: bytes
    binding: common_pb2.HandleBinding | None = None


def make_targets(
    public: ThresholdPublicKey,
    count: int,
    *,
    prefix: bytes = b"",
    producer: Actors | None = None,
) -> list[Target]:
    """`count` fresh ciphertexts encrypted to the threshold key, under random handles,
    bound by `producer`'s gateway when given."""
    out = []
    for i in range(count):
        handle = prefix + os.urandom(32 - len(prefix))
        plaintext = bytes([i + 1]) * 32
        ct = ecies.encrypt(public.public_key, plaintext, handle)
        binding = None
        if producer is not None:
            binding = bound_proto(producer.gateway, producer.domain, handle, ct)
        out.append(Target(handle, ct, plaintext, binding))
    return out


@dataclass
class Actors:
    """The registered parties around the KMS nodes, and the deployment's domain."""

    domain: Domain
    gateway: EnclaveKey
    runner: EnclaveKey
    orchestrator: EnclaveKey
    kms: list[EnclaveKey]
    clock: list[int] = field(default_factory=list)

    def now(self) -> int:
        return self.clock[0]

    def runner_request(
        self,
        requester: RequesterKey,
        handles: Sequence[bytes],
        *,
        inputs: Sequence[bytes] | None = None,
        orchestrator: EnclaveKey | None = None,
        runner: EnclaveKey | None = None,
        runner_address: bytes | None = None,
        task_id: bytes = TASK_ID,
        lease: int = 300,
    ) -> SignedEnvelope:
        """The runner's signed GetOperands envelope carrying the orchestrator's assignment."""
        now = self.now()
        runner = runner or self.runner
        assignment = TaskAssignment(
            task_id=TASK_ID,
            input_handles=list(handles if inputs is None else inputs),
            runner_address=runner_address or runner.address,
            assigned_at=now - 5,
            lease_expires_at=now + lease,
            attempt=1,
        )
        signed_assignment = sign_envelope(
            orchestrator or self.orchestrator,
            assignment,
            domain=self.domain,
            audience=runner.address,
            now=now - 5,
            ttl=600,
        )
        operands = GetOperandsPayload(
            task_id=task_id,
            assignment=signed_assignment,
            requester_key=requester_key_to_proto(requester.public),
            handles=list(handles),
        )
        return sign_envelope(
            runner, operands, domain=self.domain, audience=self.gateway.address, now=now
        )

    def user_authorization(
        self,
        requester: RequesterKey,
        handles: Sequence[bytes],
        *,
        signer: LocalAccount | None = None,
        not_before: int | None = None,
        expires_at: int | None = None,
    ) -> decryption_pb2.DecryptionAuthorization:
        """A user's EIP-712 decryption authorization (signed by `signer` when given)."""
        now = self.now()
        user = Account.create()
        auth = decryption_pb2.DecryptionAuthorization(
            chain_id=self.domain.chain_id,
            user_address=bytes.fromhex(user.address[2:]),
            requester_key=requester_key_to_proto(requester.public),
            handles=list(handles),
            not_before=now - 10 if not_before is None else not_before,
            expires_at=now + 600 if expires_at is None else expires_at,
        )
        auth.signature = (
            (signer or user).unsafe_sign_hash(authorization_digest(self.domain, auth)).signature
        )
        return auth

    def sign_for(
        self,
        node: int,
        payload: kms_pb2.DelegatePayload,
        *,
        signer: EnclaveKey | None = None,
        issued_at: int | None = None,
        ttl: int = 60,
    ) -> kms_pb2.DelegateRequest:
        """The gateway's (or `signer`'s) Delegate request for KMS node `node` (0-based)."""
        envelope = sign_envelope(
            signer or self.gateway,
            payload,
            domain=self.domain,
            audience=self.kms[node].address,
            now=self.now() if issued_at is None else issued_at,
            ttl=ttl,
        )
        return kms_pb2.DelegateRequest(envelope=envelope)

    def resigned(self, envelope: SignedEnvelope, payload: bytes) -> SignedEnvelope:
        """`envelope` with other payload bytes, signed again by the gateway (undecodable input)."""
        forged = SignedEnvelope()
        forged.CopyFrom(envelope)
        forged.payload = payload
        forged.signature = self.gateway.sign_digest(envelope_signing_digest(forged, self.domain))
        return forged


def delegate_payload(
    requester: RequesterKey, targets: Sequence[Target], *, epoch: int = 0, **authorization: Any
) -> kms_pb2.DelegatePayload:
    """A DelegatePayload for `targets`, with one of the three authorizations."""
    return kms_pb2.DelegatePayload(
        epoch=epoch,
        requester_key=requester_key_to_proto(requester.public),
        targets=[
            kms_pb2.DelegationTarget(
                handle=t.handle,
                ephemeral_public_key=t.ciphertext.ephemeral_public_key,
                binding=t.binding,
            )
            for t in targets
        ],
        **authorization,
    )


def open_answers(
    actors: Actors,
    public: ThresholdPublicKey,
    directory: NodeDirectory,
    requester: RequesterKey,
    targets: Sequence[Target],
    payload: kms_pb2.DelegatePayload,
    answers: Sequence[SignedEnvelope],
) -> tuple[list[bytes], list[tuple[int, ...]]]:
    """The requester's side: verify the signed answers and every DLEQ proof, combine t,
    decrypt each ECIES ciphertext with the rebuilt S = x·K. Returns (plaintexts, bad nodes)."""
    pairs = [(t.handle, t.ciphertext.ephemeral_public_key) for t in targets]
    collected = collect_partials(
        answers,
        targets=pairs,
        public=public,
        requester_kind=requester.public.kind,
        domain=actors.domain,
        audience=actors.gateway.address,
        registry=directory,
        now=actors.now(),
        request_hash=keccak256(payload.SerializeToString()),
    )
    combos = combine_targets(
        collected, targets=pairs, public=public, requester_key=requester, stop_at_threshold=False
    )
    plaintexts = [
        ecies.decrypt_with_shared_point(c.shared_point, t.ciphertext, t.handle)
        for c, t in zip(combos, targets, strict=True)
    ]
    return plaintexts, [c.bad_indices for c in combos]
