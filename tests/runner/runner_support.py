"""Shared pieces of the runner tests: a deployment's keys, real KMS nodes, a gateway double.

The crypto is all real: ECIES under a real 2-of-3 threshold key, real KMS nodes
(`nox.kms.node.KmsNode`) answering Delegate with real DLEQ proofs and sealed partials, real
envelopes. What is doubled is what these tests do not test: the registry (a dictionary
behind the `NodeDirectory` interface, unless a test uses the chain) and the gateway (a
function doing what GatewayService.GetOperands does: store lookup, Delegate to the KMS
nodes, a signed answer).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tagkeys import tag_key_of

from nox.crypto import ecies
from nox.crypto.binding import BoundRow, sign_bindings
from nox.crypto.dleq import DleqProof
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.tags import TagKey
from nox.crypto.threshold import Dealing, deal
from nox.errors import PermissionDenied
from nox.handles import Handle, ValueType, new_input_handle, result_handle, uint
from nox.kms.client import tag_key_targets
from nox.kms.keys import LoadedShare
from nox.kms.node import KmsNode
from nox.kms.wire import binding_to_proto, proof_to_proto
from nox.runner.executor import (
    ExecutorConfig,
    RunnerLimits,
    TaskExecutor,
    task_id_for,
)
from nox.v1 import common_pb2, gateway_pb2, kms_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

NOW = 1_800_000_000
CHAIN_ID = 31337
SALT = bytes(32)  # the salt of the tag commitment of the inputs this store binds
REGISTRY = bytes.fromhex("11" * 20)
COMPUTE = bytes.fromhex("22" * 20)
CALLER = bytes.fromhex("33" * 20)
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=REGISTRY)
ORCHESTRATOR, RUNNER, GATEWAY, KMS, INGESTOR = 1, 2, 3, 4, 5
TRANSFER, ADD = 16, 1
KMS_SECRET = 0x5EC2E7_0F_7E57_0000_1234_5678_9ABC_DEF0
"""The undivided KMS key of the tests, known only so a test can check outputs by decrypting."""

WIDE_LIMITS = task_pb2.TaskLimits(
    max_operations=16,
    max_input_handles=16,
    max_output_handles=16,
    max_ciphertext_bytes=4096,
    max_execution_seconds=120,
)


@dataclass
class FakeRegistry:
    """address -> role, answering like RegistryView.require for active, attested nodes."""

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

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.roles[key.address] = role
        return key


@dataclass
class Deployment:
    """Every party's key, the KMS nodes, and the gateway's store (handle -> ciphertext)."""

    registry: FakeRegistry
    dealing: Dealing
    kms_keys: list[EnclaveKey]
    kms_nodes: list[KmsNode]
    orchestrator: EnclaveKey
    ingestor: EnclaveKey
    gateway: EnclaveKey
    runner: EnclaveKey
    store: dict[bytes, ecies.Ciphertext] = field(default_factory=dict)
    # The gateway's producer binding of each stored input (nox.crypto.binding).
    bindings: dict[bytes, common_pb2.HandleBinding] = field(default_factory=dict)
    domain: Domain = DOMAIN

    @property
    def kms_public_key(self) -> bytes:
        return self.dealing.public.public_key

    def executor(
        self,
        *,
        limits: RunnerLimits | None = None,
        key_factory: Callable[..., object] | None = None,
    ) -> TaskExecutor:
        config = ExecutorConfig(
            domain=self.domain,
            kms_public=self.dealing.public,
            compute_address=COMPUTE,
            limits=limits or RunnerLimits(),
        )
        extra = {} if key_factory is None else {"key_factory": key_factory}
        return TaskExecutor(
            key=self.runner,
            config=config,
            directory=self.registry,
            replay=MemoryReplayCache(),
            tag_key=self.tag_key,
            **extra,  # type: ignore[arg-type]
        )

    @property
    def tag_key(self) -> TagKey:
        """The deployment's value-tag key (what the runner gets through GetTagKey)."""
        return tag_key_of(self.dealing, self.domain)

    def store_input(self, vt: ValueType, value: int) -> bytes:
        """What EncryptInput does: a fresh handle, the value encrypted under the KMS key."""
        handle = new_input_handle(CHAIN_ID, vt).to_bytes()
        plaintext = value.to_bytes(vt.byte_size, "big")
        ct = ecies.encrypt(self.kms_public_key, plaintext, handle)
        self.store[handle] = ct
        row = BoundRow(handle, ct.ephemeral_public_key, ct.nonce, ct.ciphertext, bytes(32), SALT)
        (binding,) = sign_bindings(self.gateway, self.domain, b"", [row])
        self.bindings[handle] = binding_to_proto(binding)
        return handle


def make_deployment(
    *,
    kms_nodes: int = 3,
    threshold: int = 2,
    registry: FakeRegistry | None = None,
    clock: Callable[[], int] = lambda: NOW,
    domain: Domain = DOMAIN,
) -> Deployment:
    """Keys for every role, enrolled in `registry` (anything with `require` and `enrol`),
    and real KMS nodes over a dealing of KMS_SECRET."""
    registry = registry if registry is not None else FakeRegistry()
    dealing = deal(threshold, kms_nodes, secret=KMS_SECRET)
    kms_keys = [registry.enrol(KMS) for _ in range(kms_nodes)]
    nodes = [
        KmsNode(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=domain,
            registry=registry,
            replay=MemoryReplayCache(),
            clock=clock,
        )
        for share, key in zip(dealing.shares, kms_keys, strict=True)
    ]
    return Deployment(
        registry=registry,
        dealing=dealing,
        kms_keys=kms_keys,
        kms_nodes=nodes,
        orchestrator=registry.enrol(ORCHESTRATOR),
        ingestor=registry.enrol(INGESTOR),
        gateway=registry.enrol(GATEWAY),
        runner=registry.enrol(RUNNER),
        domain=domain,
    )


def outputs_of(
    operator: int, inputs: Sequence[bytes], types: Sequence[ValueType], *, timestamp: int = NOW - 12
) -> list[bytes]:
    """The result handles NoxCompute derives for one op."""
    return [
        result_handle(operator, inputs, COMPUTE, CALLER, timestamp, i, CHAIN_ID, vt).to_bytes()
        for i, vt in enumerate(types)
    ]


def transaction(operations: Sequence[task_pb2.Operation]) -> task_pb2.TransactionMessage:
    return task_pb2.TransactionMessage(
        chain_id=CHAIN_ID,
        block_number=7,
        block_hash=os.urandom(32),
        block_timestamp=NOW - 12,
        transaction_hash=os.urandom(32),
        compute_address=COMPUTE,
        operations=list(operations),
    )


def operation(
    log_index: int,
    operator: int,
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    plaintext: bytes = b"",
) -> task_pb2.Operation:
    return task_pb2.Operation(
        log_index=log_index,
        operator=operator,
        caller=CALLER,
        input_handles=list(inputs),
        output_handles=list(outputs),
        plaintext=plaintext,
    )


def fetched_inputs(tx: task_pb2.TransactionMessage) -> tuple[list[bytes], list[bytes]]:
    produced: set[bytes] = set()
    inputs: list[bytes] = []
    outputs: list[bytes] = []
    for op in tx.operations:
        for h in op.input_handles:
            if h not in produced and h not in inputs:
                inputs.append(h)
        for h in op.output_handles:
            produced.add(h)
            outputs.append(h)
    return inputs, outputs


def assign(
    dep: Deployment,
    tx: task_pb2.TransactionMessage,
    *,
    signer: EnclaveKey | None = None,
    runner: bytes | None = None,
    limits: task_pb2.TaskLimits = WIDE_LIMITS,
    now: int = NOW,
) -> SignedEnvelope:
    """The orchestrator-signed assignment of `tx` (ingestor-signed) to the runner."""
    tx_env = sign_envelope(
        dep.ingestor, tx, domain=dep.domain, audience=COMPUTE, now=now, ttl=86400
    )
    inputs, outputs = fetched_inputs(tx)
    runner_address = runner if runner is not None else dep.runner.address
    message = task_pb2.TaskAssignment(
        task_id=task_id_for(tx.chain_id, tx.transaction_hash),
        transaction=tx_env,
        input_handles=inputs,
        output_handles=outputs,
        runner_address=runner_address,
        assigned_at=now,
        lease_expires_at=now + 60,
        attempt=1,
        limits=limits,
        redundancy=1,
    )
    return sign_envelope(
        signer or dep.orchestrator,
        message,
        domain=dep.domain,
        audience=runner_address,
        now=now,
        ttl=300,
    )


Tamper = Callable[[gateway_pb2.GetOperandsResponsePayload], None]


def lie_in_proof(
    response: kms_pb2.DelegateResponse, key: EnclaveKey, now: int = NOW, domain: Domain = DOMAIN
) -> kms_pb2.DelegateResponse:
    """The same answer with every DLEQ proof altered, validly re-signed by the node's key:
    a node lying about its partials (detected by the proof, not by the signature)."""
    payload = kms_pb2.DelegateResponsePayload.FromString(response.envelope.payload)
    for delegation in payload.delegations:
        proof = DleqProof.from_bytes(delegation.proof.challenge + delegation.proof.response)
        delegation.proof.CopyFrom(
            proof_to_proto(dataclasses.replace(proof, response=proof.response % (2**255) + 1))
        )
    env = response.envelope
    return kms_pb2.DelegateResponse(
        envelope=sign_envelope(
            key,
            payload,
            domain=domain,
            audience=env.audience,
            now=now,
            ttl=env.expires_at - env.issued_at,
        )
    )


def serve_operands(
    dep: Deployment,
    request: gateway_pb2.GetOperandsRequest,
    *,
    now: int = NOW,
    nodes: Sequence[int] | None = None,
    lying: Sequence[int] = (),
    tamper: Tamper | None = None,
) -> gateway_pb2.GetOperandsResponse:
    """GetOperands as the gateway answers it: check the runner, relay to KMS nodes `nodes`
    (0-based; default all), of which `lying` answer with bad proofs, sign the answer."""
    runner = verify_envelope(
        request.envelope,
        gateway_pb2.GetOperandsPayload,
        domain=dep.domain,
        audience=dep.gateway.address,
        now=now,
        replay=MemoryReplayCache(),
        authorize=lambda s: dep.registry.require(s, RUNNER, now),
    )
    handles = list(runner.message.handles)
    cts = [dep.store[h] for h in handles]
    responses = []
    for i in nodes if nodes is not None else range(len(dep.kms_nodes)):
        node = dep.kms_nodes[i]
        delegate = kms_pb2.DelegatePayload(
            epoch=dep.dealing.public.epoch,
            requester_key=runner.message.requester_key,
            targets=[
                kms_pb2.DelegationTarget(
                    handle=h, ephemeral_public_key=ct.ephemeral_public_key, binding=dep.bindings[h]
                )
                for h, ct in zip(handles, cts, strict=True)
            ],
            runner_request=request.envelope,
        )
        env = sign_envelope(
            dep.gateway, delegate, domain=dep.domain, audience=node.address, now=now
        )
        answer = node.delegate(kms_pb2.DelegateRequest(envelope=env))
        if i in lying:
            answer = lie_in_proof(answer, dep.kms_keys[i], now, dep.domain)
        responses.append(answer.envelope)
    payload = gateway_pb2.GetOperandsResponsePayload(
        request_hash=keccak256(request.envelope.payload),
        operands=[
            common_pb2.TypedCiphertext(
                handle=h,
                ciphertext=ct.ciphertext,
                ephemeral_public_key=ct.ephemeral_public_key,
                nonce=ct.nonce,
                binding=dep.bindings[h],
            )
            for h, ct in zip(handles, cts, strict=True)
        ],
        kms_delegations=responses,
        kms_threshold=dep.dealing.public.threshold,
        kms_epoch=dep.dealing.public.epoch,
    )
    if tamper is not None:
        tamper(payload)
    env = sign_envelope(dep.gateway, payload, domain=dep.domain, audience=runner.signer, now=now)
    return gateway_pb2.GetOperandsResponse(envelope=env)


def serve_tag_key(
    dep: Deployment, request: gateway_pb2.GetTagKeyRequest, *, now: int = NOW
) -> gateway_pb2.GetTagKeyResponse:
    """GetTagKey as the gateway answers it: check the runner, relay to every KMS node."""
    runner = verify_envelope(
        request.envelope,
        gateway_pb2.GetTagKeyPayload,
        domain=dep.domain,
        audience=dep.gateway.address,
        now=now,
        replay=MemoryReplayCache(),
        authorize=lambda s: dep.registry.require(s, RUNNER, now),
    )
    ((handle, point),) = tag_key_targets(dep.domain)
    responses = []
    for node in dep.kms_nodes:
        delegate = kms_pb2.DelegatePayload(
            epoch=dep.dealing.public.epoch,
            requester_key=runner.message.requester_key,
            targets=[kms_pb2.DelegationTarget(handle=handle, ephemeral_public_key=point)],
            tag_key=kms_pb2.TagKeyAuthorization(runner_request=request.envelope),
        )
        env = sign_envelope(
            dep.gateway, delegate, domain=dep.domain, audience=node.address, now=now
        )
        responses.append(node.delegate(kms_pb2.DelegateRequest(envelope=env)).envelope)
    return gateway_pb2.GetTagKeyResponse(
        kms_delegations=responses,
        kms_threshold=dep.dealing.public.threshold,
        kms_epoch=dep.dealing.public.epoch,
    )


def kms_decrypt(ct_message: object, handle: bytes) -> bytes:
    """Decrypt an output with the undivided test key (what t KMS nodes would allow)."""
    ct = ecies.Ciphertext(
        ct_message.ciphertext,  # type: ignore[attr-defined]
        ct_message.ephemeral_public_key,  # type: ignore[attr-defined]
        ct_message.nonce,  # type: ignore[attr-defined]
    )
    return ecies.decrypt(KMS_SECRET.to_bytes(32, "big"), ct, handle)


def transfer_task(
    dep: Deployment, amount: int, balance_from: int, balance_to: int, vt: ValueType | None = None
) -> tuple[task_pb2.TransactionMessage, list[bytes]]:
    """A confidential transfer: 3 stored inputs, 3 outputs. Returns (tx, input handles)."""
    vt = vt or uint(64)
    inputs = [dep.store_input(vt, v) for v in (amount, balance_from, balance_to)]
    outs = outputs_of(TRANSFER, inputs, [vt, vt, vt])
    return transaction([operation(3, TRANSFER, inputs, outs)]), inputs


def handle_type(handle: bytes) -> ValueType:
    return Handle.from_bytes(handle).value_type
