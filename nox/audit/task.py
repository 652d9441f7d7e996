"""`audit_task`: who executed a task, and which signatures and attestations back it.

The evidence is what the gateway keeps with a stored task (`TaskInfo.evidence`): the
orchestrator-signed StoreResults envelope exactly as received. It nests everything else:

    StoreResults envelope            signer ORCHESTRATOR, audience the gateway
      per execution:
        TaskAssignment envelope      signer ORCHESTRATOR, audience the runner
          TransactionMessage env.    signer INGESTOR, audience the NoxCompute address
        SubmitResult envelope        signer RUNNER (the assignment's), audience the orchestrator

The audit checks every signature (recovering the signer from the envelope as signed, at its
own issue time: an audit runs long after the envelopes expired), that every signer is a
registered node of the right role, not revoked, whose quote verifies (the registry audit's
verdict for it, expiry since then being normal for history), and the links between them:
the task id is keccak256("<chainId>:<txHash>") of the transaction (task.proto); the
assignment is the runner's and names the task; the result answers that assignment
(assignment_hash) with exactly its output handles; redundant executions agree; the outputs
equal the handles and value tags the gateway stored; and, on the chain, the transaction
exists in the stated block and its NoxCompute `Operation` events produce exactly the
assignment's output handles.

Every check is recorded as a `Finding`; the audit is OK when all are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound
from web3.types import TxReceipt

from nox.audit.exceptions import AuditInputError
from nox.audit.registry import ROLE_NAMES, NodeVerdict
from nox.chain.backend import ChainBackend
from nox.chain.contracts import ComputeClient, to_checksum
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.replay import MemoryReplayCache
from nox.errors import NoxError
from nox.gateway.store import HandleRecord, TaskInfo, result_digest
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.gateway_pb2 import StoreResultsPayload
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskAssignment, TransactionMessage

ORCHESTRATOR, RUNNER, GATEWAY, INGESTOR = 1, 2, 3, 5
M = TypeVar("M", bound=Message)


def task_id_for(chain_id: int, transaction_hash: bytes) -> bytes:
    """keccak256(utf8("<chainId>:0x<txHash>")), the task id of task.proto."""
    return keccak256(f"{chain_id}:0x{transaction_hash.hex()}".encode())


@dataclass(frozen=True)
class Finding:
    """One check of the audit and its outcome."""

    check: str
    ok: bool
    detail: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Signature:
    """One signed envelope of the evidence: who signed it, for whom, when, and the signer's
    registration and attestation verdict (None when the signer is not registered)."""

    what: str
    payload_type: str
    signer: bytes
    expected_role: int
    audience: bytes
    issued_at: int
    expires_at: int
    node: NodeVerdict | None

    def to_json(self) -> dict[str, Any]:
        node = self.node
        return {
            "what": self.what,
            "payload_type": self.payload_type,
            "signer": to_checksum(self.signer),
            "expected_role": ROLE_NAMES.get(self.expected_role, str(self.expected_role)),
            "audience": to_checksum(self.audience),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "signer_registration": None if node is None else node.to_json(),
        }


@dataclass
class TaskAudit:
    """The chain of evidence of one task."""

    task_id: bytes
    chain_id: int | None = None
    transaction_hash: bytes | None = None
    block_number: int | None = None
    compute_address: bytes | None = None
    orchestrator: bytes | None = None
    gateway: bytes | None = None
    runners: list[bytes] = field(default_factory=list)
    output_handles: list[bytes] = field(default_factory=list)
    signatures: list[Signature] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        def hx(b: bytes | None) -> str | None:
            return None if b is None else "0x" + b.hex()

        return {
            "task_id": hx(self.task_id),
            "ok": self.ok,
            "chain_id": self.chain_id,
            "transaction_hash": hx(self.transaction_hash),
            "block_number": self.block_number,
            "compute_address": hx(self.compute_address),
            "orchestrator": None if self.orchestrator is None else to_checksum(self.orchestrator),
            "gateway": None if self.gateway is None else to_checksum(self.gateway),
            "runners": [to_checksum(r) for r in self.runners],
            "output_handles": [hx(h) for h in self.output_handles],
            "signatures": [s.to_json() for s in self.signatures],
            "findings": [f.to_json() for f in self.findings],
        }


class _Auditor:
    def __init__(
        self, audit: TaskAudit, domain: Domain, nodes: Mapping[bytes, NodeVerdict]
    ) -> None:
        self.audit = audit
        self.domain = domain
        self.nodes = nodes

    def check(self, name: str, ok: bool, detail: str, reason: str) -> bool:
        self.audit.findings.append(Finding(name, ok, detail, None if ok else reason))
        return ok

    def open(
        self, what: str, env: SignedEnvelope, message_type: type[M], role: int
    ) -> tuple[bytes, M] | None:
        """Verify `env`'s signature at its issue time and its signer's registration; record
        the signature and the findings. None when the envelope cannot be opened at all."""
        try:
            verified = verify_envelope(
                env,
                message_type,
                domain=self.domain,
                audience=bytes(env.audience) if len(env.audience) == 20 else bytes(20),
                now=int(env.issued_at),
                replay=MemoryReplayCache(),
                max_ttl=2**63,
                max_size=2**31,
            )
        except NoxError as exc:
            self.check(f"{what}: signature", False, exc.message, exc.reason)
            return None
        signer = verified.signer
        node = self.nodes.get(signer)
        self.audit.signatures.append(
            Signature(
                what,
                env.payload_type,
                signer,
                role,
                bytes(env.audience),
                int(env.issued_at),
                int(env.expires_at),
                node,
            )
        )
        self.check(f"{what}: signature", True, f"signed by {to_checksum(signer)}", "")
        self.signer_checks(what, signer, role)
        return signer, verified.message

    def signer_checks(self, what: str, signer: bytes, role: int) -> None:
        name = f"{what}: signer attested"
        node = self.nodes.get(signer)
        role_name = ROLE_NAMES.get(role, str(role))
        if node is None:
            self.check(
                name, False, f"{to_checksum(signer)} never registered", "SIGNER_NOT_REGISTERED"
            )
        elif node.role != role:
            self.check(
                name, False, f"registered as {node.role_name}, not {role_name}", "ROLE_MISMATCH"
            )
        elif node.status == "revoked":
            self.check(name, False, f"revoked ({node.reason or 'enclave revoked'})", "REVOKED")
        elif not node.ok:
            self.check(
                name,
                False,
                f"quote does not verify: {node.detail}",
                node.reason or "ATTESTATION_FAILED",
            )
        else:
            self.check(
                name, True, f"{role_name}, quote verifies ({node.tcb_status}), {node.status}", ""
            )


def _parse(data: bytes, message_type: type[M], what: str) -> M:
    msg = message_type()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise AuditInputError(
            f"{what} does not parse as {message_type.DESCRIPTOR.full_name}"
        ) from None
    return msg


def audit_task(
    task_id: bytes,
    evidence: bytes,
    *,
    domain: Domain,
    nodes: Mapping[bytes, NodeVerdict],
    stored: TaskInfo | None = None,
    chain: ChainBackend | None = None,
) -> TaskAudit:
    """Audit `evidence` (a serialized StoreResults SignedEnvelope) for `task_id`.

    `domain` is the deployment's envelope domain (chain id, NoxRegistry); `nodes` the
    registry audit's verdicts by enclave address (`audit_registry`); `stored` the gateway's
    task row, whose handles and value tags the evidence must match; `chain`, when given,
    is used to check the transaction and its Operation events.
    """
    if len(task_id) != 32:
        raise AuditInputError("a task id is 32 bytes")
    audit = TaskAudit(task_id)
    a = _Auditor(audit, domain, nodes)
    outer_env = _parse(evidence, SignedEnvelope, "the task evidence")
    opened = a.open("store request", outer_env, StoreResultsPayload, ORCHESTRATOR)
    if opened is None:
        return audit
    orchestrator, payload = opened
    audit.orchestrator, audit.gateway = orchestrator, bytes(outer_env.audience)
    gw = nodes.get(audit.gateway)
    a.check(
        "store request: audience is a gateway",
        gw is not None and gw.role == GATEWAY,
        f"addressed to {to_checksum(audit.gateway)}",
        "AUDIENCE_NOT_GATEWAY",
    )
    a.check(
        "store request: task id",
        bytes(payload.task_id) == task_id,
        "names this task" if bytes(payload.task_id) == task_id else "names another task",
        "TASK_ID_MISMATCH",
    )
    tags: list[list[tuple[bytes, bytes]]] = []
    records: list[HandleRecord] = []
    for i, execution in enumerate(payload.executions, start=1):
        got = _execution(a, i, execution.assignment, execution.result, orchestrator, task_id)
        if got is not None:
            tags.append([(r.handle, r.value_tag) for r in got])
            records = records or got
    a.check(
        "executions",
        len(payload.executions) > 0,
        f"{len(payload.executions)} execution(s)",
        "NO_EXECUTIONS",
    )
    if len(tags) > 1:
        a.check(
            "redundant executions agree",
            all(t == tags[0] for t in tags),
            f"{len(tags)} executions",
            "RESULT_DISAGREEMENT",
        )
    if stored is not None:
        same = list(stored.handles) == [
            r.handle for r in records
        ] and stored.result_digest == result_digest(records)
        a.check(
            "gateway store holds these outputs",
            same,
            f"{len(stored.handles)} handles stored at {stored.stored_at}",
            "STORED_OUTPUTS_MISMATCH",
        )
    if chain is not None and audit.transaction_hash is not None:
        _check_chain(a, chain)
    return audit


def _execution(
    a: _Auditor,
    index: int,
    assignment_env: SignedEnvelope,
    result_env: SignedEnvelope,
    orchestrator: bytes,
    task_id: bytes,
) -> list[HandleRecord] | None:
    audit = a.audit
    opened_a = a.open(f"assignment #{index}", assignment_env, TaskAssignment, ORCHESTRATOR)
    opened_r = a.open(f"result #{index}", result_env, SubmitResultPayload, RUNNER)
    if opened_a is None or opened_r is None:
        return None
    _, assignment = opened_a
    runner, submitted = opened_r
    result = submitted.result
    if runner not in audit.runners:
        audit.runners.append(runner)
    leased = bytes(assignment.runner_address)
    leased_to = to_checksum(leased) if len(leased) == 20 else f"0x{leased.hex()}"
    ok = a.check(
        f"assignment #{index}: runner",
        bytes(assignment.runner_address) == runner and bytes(assignment_env.audience) == runner,
        f"leased to {leased_to}"
        f" (attempt {assignment.attempt}), result signed by {to_checksum(runner)}",
        "RUNNER_MISMATCH",
    )
    ok &= a.check(
        f"result #{index}: audience",
        bytes(result_env.audience) == orchestrator,
        "sent to the orchestrator that stored it",
        "AUDIENCE_MISMATCH",
    )
    ok &= a.check(
        f"execution #{index}: task id",
        bytes(assignment.task_id) == task_id and bytes(result.task_id) == task_id,
        "assignment and result name this task",
        "TASK_ID_MISMATCH",
    )
    ok &= a.check(
        f"result #{index}: answers the assignment",
        bytes(result.assignment_hash) == keccak256(assignment_env.payload),
        "assignment_hash = keccak256(assignment payload)",
        "ASSIGNMENT_HASH_MISMATCH",
    )
    outputs = list(result.outputs.ciphertexts) if result.WhichOneof("outcome") == "outputs" else []
    handles = [bytes(c.handle) for c in outputs]
    ok &= a.check(
        f"result #{index}: outputs",
        result.WhichOneof("outcome") == "outputs"
        and handles == [bytes(h) for h in assignment.output_handles],
        f"{len(handles)} outputs, exactly the assignment's output handles",
        "OUTPUTS_MISMATCH",
    )
    _transaction(a, index, assignment, task_id)
    if not audit.output_handles:
        audit.output_handles = [bytes(h) for h in assignment.output_handles]
    if not ok:
        return None
    return [
        HandleRecord(
            handle=bytes(c.handle),
            ciphertext=bytes(c.ciphertext),
            ephemeral_public_key=bytes(c.ephemeral_public_key),
            nonce=bytes(c.nonce),
            value_tag=bytes(c.value_tag),
        )
        for c in outputs
    ]


def _transaction(a: _Auditor, index: int, assignment: TaskAssignment, task_id: bytes) -> None:
    audit = a.audit
    opened = a.open(f"transaction #{index}", assignment.transaction, TransactionMessage, INGESTOR)
    if opened is None:
        return
    _, tx = opened
    a.check(
        f"transaction #{index}: task id",
        task_id_for(int(tx.chain_id), bytes(tx.transaction_hash)) == task_id,
        "task id = keccak256(chainId:txHash)",
        "TASK_ID_MISMATCH",
    )
    a.check(
        f"transaction #{index}: audience",
        bytes(assignment.transaction.audience) == bytes(tx.compute_address),
        "broadcast to the NoxCompute contract",
        "AUDIENCE_MISMATCH",
    )
    if audit.transaction_hash is None:
        audit.chain_id = int(tx.chain_id)
        audit.transaction_hash = bytes(tx.transaction_hash)
        audit.block_number = int(tx.block_number)
        audit.compute_address = bytes(tx.compute_address)


def _check_chain(a: _Auditor, chain: ChainBackend) -> None:
    audit = a.audit
    assert audit.transaction_hash is not None
    if not a.check(
        "chain: chain id",
        chain.chain_id == audit.chain_id,
        f"the endpoint serves chain {chain.chain_id}",
        "WRONG_CHAIN",
    ):
        return
    try:
        receipt: TxReceipt | None = chain.w3.eth.get_transaction_receipt(
            HexBytes(audit.transaction_hash)
        )
    except TransactionNotFound:
        receipt = None
    if not a.check(
        "chain: transaction",
        receipt is not None and int(receipt["blockNumber"]) == audit.block_number,
        "mined in the stated block" if receipt is not None else "not found on this chain",
        "TRANSACTION_NOT_FOUND",
    ):
        return
    assert receipt is not None
    assert audit.compute_address is not None
    compute = ComputeClient(chain, audit.compute_address)
    produced = [h for op in compute.operations(receipt) for h in op.outputs]
    a.check(
        "chain: Operation events",
        produced == audit.output_handles,
        f"{len(produced)} output handles emitted by NoxCompute",
        "OUTPUTS_NOT_ON_CHAIN",
    )


__all__ = ["Finding", "Signature", "TaskAudit", "audit_task", "task_id_for"]
