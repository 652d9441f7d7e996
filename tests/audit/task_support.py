"""A task executed "by hand" with real registered keys: an on-chain NoxCompute transaction,
then the envelopes the ingestor, orchestrator and runner sign for it (task.proto,
gateway.proto), stored in a real gateway store the way StoreResults stores them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from contracts_support import Harness, Net
from eth_account.signers.local import LocalAccount

from nox.audit.task import task_id_for
from nox.chain.contracts import to_bytes20
from nox.crypto.ecies import encrypt
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.tags import TagKey
from nox.gateway.store import HandleRecord, HandleStore
from nox.handles import encode_plaintext, uint, value_tag
from nox.v1.common_pb2 import TypedCiphertext
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.gateway_pb2 import SignedExecution, StoreResultsPayload
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import (
    Operation,
    TaskAssignment,
    TaskOutputs,
    TaskResult,
    TransactionMessage,
)

ORCHESTRATOR, RUNNER, GATEWAY, INGESTOR = 1, 2, 3, 5
U64 = uint(64).code
ADD = 1


def key_of(account: LocalAccount) -> EnclaveKey:
    return EnclaveKey.from_bytes(bytes(account.key))


@dataclass
class Task:
    """Everything a test may tamper with before assembling the evidence."""

    net: Net
    domain: Domain
    ingestor: EnclaveKey
    orchestrator: EnclaveKey
    runner: EnclaveKey
    gateway: EnclaveKey
    task_id: bytes
    transaction: SignedEnvelope
    assignment: TaskAssignment
    outputs: list[TypedCiphertext] = field(default_factory=list)
    now: int = 0

    def sign_assignment(self, key: EnclaveKey | None = None) -> SignedEnvelope:
        return sign_envelope(
            key or self.orchestrator,
            self.assignment,
            domain=self.domain,
            audience=bytes(self.assignment.runner_address),
            now=self.now,
        )

    def sign_result(
        self, assignment: SignedEnvelope, key: EnclaveKey | None = None
    ) -> SignedEnvelope:
        result = TaskResult(
            task_id=self.task_id,
            assignment_hash=keccak256(assignment.payload),
            outputs=TaskOutputs(ciphertexts=self.outputs),
        )
        return sign_envelope(
            key or self.runner,
            SubmitResultPayload(result=result),
            domain=self.domain,
            audience=self.orchestrator.address,
            now=self.now,
        )

    def evidence(
        self,
        assignment: SignedEnvelope | None = None,
        result: SignedEnvelope | None = None,
        *,
        task_id: bytes | None = None,
    ) -> bytes:
        assignment = assignment or self.sign_assignment()
        result = result or self.sign_result(assignment)
        payload = StoreResultsPayload(
            task_id=task_id or self.task_id,
            executions=[SignedExecution(assignment=assignment, result=result)],
        )
        env = sign_envelope(
            self.orchestrator,
            payload,
            domain=self.domain,
            audience=self.gateway.address,
            now=self.now,
        )
        return env.SerializeToString()

    def records(self) -> list[HandleRecord]:
        return [
            HandleRecord(
                handle=bytes(c.handle),
                ciphertext=bytes(c.ciphertext),
                ephemeral_public_key=bytes(c.ephemeral_public_key),
                nonce=bytes(c.nonce),
                value_tag=bytes(c.value_tag),
            )
            for c in self.outputs
        ]

    def store(self, store: HandleStore, evidence: bytes) -> None:
        store.publish_task(self.task_id, self.records(), evidence=evidence)


def make_task(net: Net) -> Task:
    """Register one node per role, run an Add on-chain, and prepare the task's envelopes."""
    accounts = {role: net.register_node(role) for role in (ORCHESTRATOR, RUNNER, GATEWAY, INGESTOR)}
    keys = {role: key_of(a) for role, a in accounts.items()}
    domain = Domain(net.backend.chain_id, to_bytes20(net.registry.address))
    harness = Harness(net)
    a, b = harness.encrypt(40, U64), harness.encrypt(2, U64)
    receipt = net.backend.transact(harness.fn.run(ADD, [a, b]))
    (op,) = net.compute.operations(receipt)
    block = net.backend.w3.eth.get_block(receipt["blockNumber"])
    chain_id = net.backend.chain_id
    tx_hash = bytes(receipt["transactionHash"])
    message = TransactionMessage(
        chain_id=chain_id,
        block_number=int(receipt["blockNumber"]),
        block_hash=bytes(block["hash"]),
        block_timestamp=int(block["timestamp"]),
        transaction_hash=tx_hash,
        compute_address=to_bytes20(net.compute.address),
        operations=[
            Operation(
                log_index=op.log_index,
                operator=op.operator,
                caller=op.caller,
                input_handles=op.inputs,
                output_handles=op.outputs,
            )
        ],
    )
    now = net.backend.now()
    transaction = sign_envelope(
        keys[INGESTOR],
        message,
        domain=domain,
        audience=to_bytes20(net.compute.address),
        now=now,
        ttl=3600,
    )
    task_id = task_id_for(chain_id, tx_hash)
    assignment = TaskAssignment(
        task_id=task_id,
        transaction=transaction,
        input_handles=[a, b],
        output_handles=op.outputs,
        runner_address=keys[RUNNER].address,
        assigned_at=now,
        lease_expires_at=now + 60,
        attempt=1,
        redundancy=1,
    )
    kms = EnclaveKey.generate()
    tag_key = TagKey(os.urandom(32))  # the audit compares tags; it never computes one
    outputs = []
    for handle in op.outputs:
        plaintext = encode_plaintext(uint(64), 42)
        ct = encrypt(kms.public_key, plaintext, handle)
        outputs.append(
            TypedCiphertext(
                handle=handle,
                ciphertext=ct.ciphertext,
                ephemeral_public_key=ct.ephemeral_public_key,
                nonce=ct.nonce,
                value_tag=value_tag(tag_key, handle, plaintext),
            )
        )
    return Task(
        net,
        domain,
        keys[INGESTOR],
        keys[ORCHESTRATOR],
        keys[RUNNER],
        keys[GATEWAY],
        task_id,
        transaction,
        assignment,
        outputs,
        now,
    )
