"""The heart of a runner: one task from signed assignment to signed result (DESIGN §6, §7).

Synchronous and free of I/O: the agent (`nox.runner.agent`) does the RPCs and hands the
messages in. One task goes:

1. `TaskExecutor.open_assignment`: verify the orchestrator-signed `TaskAssignment` (audience
   this runner, signer an active ORCHESTRATOR in the registry, lease running) and the
   ingestor-signed `TransactionMessage` inside it. A failure here is a *refusal*: the task
   is not executed and nothing is submitted (the assignment cannot be trusted to name what
   a result would bind to).
2. `TaskExecutor.prepare`: check the assignment against its transaction and the limits,
   build the ops, and make a fresh per-task secp256k1 key (`TaskRun`).
3. `TaskRun.operands_request`: the runner-signed `GetOperands` carrying that key.
4. `TaskRun.execute`: verify the gateway's signed answer, verify the KMS nodes' envelopes
   and DLEQ proofs against the published public shares, combine t partials per operand,
   decrypt each operand with its handle as associated data, run the ops in order, encrypt
   every output under the KMS key, compute value tags (keyed: `nox.runner.tagkey`), return
   the `TaskResult`.
5. `TaskRun.close`: drop the per-task key and every plaintext.

From step 2 on, any `NoxError` becomes a `TaskFailure` carrying its reason and code
(`TaskExecutor.failure`): never a crash, never a partial result (outputs are only built
once every op has run and every output is encrypted).

Memory, honestly: Python gives no way to wipe memory. `close` drops every reference the
runner holds to the per-task key and the plaintexts, so they become unreachable and are
freed, but the bytes of freed objects (Python ints and bytes are immutable; coincurve keeps
the secret in a bytes object; OpenSSL and libsecp256k1 make temporaries) stay in the heap
until reused. What forward secrecy rests on is that the key is never written anywhere,
never sent, and not reachable after the task: an attacker who later obtains the enclave key
and the gateway's storage cannot decrypt recorded traffic (tests/runner prove it). An
attacker who reads the process's memory while it runs is outside what software can stop;
TDX's memory encryption is the guard there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message

from nox.compute import Op, Operator, Value
from nox.compute.exceptions import ArityMismatch
from nox.crypto.binding import (
    BindingVerifier,
)
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import RELAYED, ReplayCache
from nox.crypto.tags import TagKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.errors import InvalidArgument, NoxError
from nox.handles import Handle, result_handle
from nox.runner.exceptions import (
    AssignmentInconsistent,
    AssignmentNotForThisRunner,
    LeaseExpired,
    NodeNotReady,
    OutputsMismatch,
    TaskLimitExceeded,
)
from nox.runner.run import TaskRun, TaskTimings
from nox.v1 import common_pb2, gateway_pb2, orchestrator_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = [
    "ROLE_GATEWAY",
    "ROLE_INGESTOR",
    "ROLE_KMS",
    "ROLE_ORCHESTRATOR",
    "ROLE_RUNNER",
    "Assignment",
    "ExecutorConfig",
    "NodeDirectory",
    "RunnerLimits",
    "TaskExecutor",
    "TaskOutcome",
    "TaskRun",
    "TaskTimings",
    "task_id_for",
]

ROLE_ORCHESTRATOR = common_pb2.ROLE_ORCHESTRATOR
ROLE_RUNNER = common_pb2.ROLE_RUNNER
ROLE_GATEWAY = common_pb2.ROLE_GATEWAY
ROLE_KMS = common_pb2.ROLE_KMS
ROLE_INGESTOR = common_pb2.ROLE_INGESTOR


class NodeDirectory(Protocol):
    """Who is registered (the chain layer's `RegistryView`): raises PermissionDenied unless
    `address` is an active, attested node of `role` at `now`."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise unless `address` is registered, attested and unexpired in `role` at `now`."""
        ...

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        """Like `require`, but an expired (never revoked) registration is accepted."""
        ...


@dataclass(frozen=True)
class RunnerLimits:
    """The runner's own hard caps; each task runs under the stricter of these and its
    assignment's `TaskLimits`."""

    max_operations: int = 256
    max_input_handles: int = 256
    max_output_handles: int = 768
    max_ciphertext_bytes: int = 64 * 1024
    max_execution_seconds: int = 300

    def __post_init__(self) -> None:
        if min(self.as_tuple()) < 1:
            raise InvalidArgument("every runner limit must be positive")

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (
            self.max_operations,
            self.max_input_handles,
            self.max_output_handles,
            self.max_ciphertext_bytes,
            self.max_execution_seconds,
        )

    def tightened(self, declared: task_pb2.TaskLimits) -> RunnerLimits:
        """The stricter of these caps and an assignment's declared limits (0 stays 0)."""
        return _Limits(
            min(self.max_operations, declared.max_operations),
            min(self.max_input_handles, declared.max_input_handles),
            min(self.max_output_handles, declared.max_output_handles),
            min(self.max_ciphertext_bytes, declared.max_ciphertext_bytes),
            min(self.max_execution_seconds, declared.max_execution_seconds),
        )


class _Limits(RunnerLimits):
    """Effective limits of one task: zeros allowed (a declared 0 means "none may have any")."""

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class ExecutorConfig:
    """What a runner needs to trust and answer: the deployment and the KMS key set."""

    domain: Domain
    # The KMS threshold key as published (registry or KMS public.json): outputs are encrypted
    # to `public_key`, partials are checked against `public_shares`.
    kms_public: ThresholdPublicKey
    # NoxCompute address: the audience of the ingestor's TransactionMessage envelopes.
    compute_address: bytes
    limits: RunnerLimits = field(default_factory=RunnerLimits)
    # Validity of the envelopes the runner signs, seconds.
    envelope_ttl: int = 60
    # Tolerated clock skew, and the longest window accepted on orchestrator, gateway and KMS
    # envelopes, seconds.
    max_skew: int = 30
    max_envelope_ttl: int = 3600
    # Longest window accepted on a TransactionMessage (it spans the stream's maximum age).
    max_transaction_ttl: int = 30 * 86400

    def __post_init__(self) -> None:
        if len(self.compute_address) != 20:
            raise InvalidArgument("compute address must be 20 bytes")
        if self.envelope_ttl < 1 or self.max_skew < 0:
            raise InvalidArgument("envelope_ttl must be positive and max_skew >= 0")


def task_id_for(chain_id: int, transaction_hash: bytes) -> bytes:
    """keccak256(utf8("<chainId>:0x<txHash lowercase hex>")), the task id of task.proto."""
    return keccak256(f"{chain_id}:0x{transaction_hash.hex()}".encode())


@dataclass(frozen=True)
class Assignment:
    """A verified assignment and the verified transaction it carries."""

    envelope: SignedEnvelope
    message: task_pb2.TaskAssignment
    orchestrator: bytes
    transaction: task_pb2.TransactionMessage

    @property
    def task_id(self) -> bytes:
        return bytes(self.message.task_id)

    @property
    def assignment_hash(self) -> bytes:
        """keccak256 of the assignment envelope's payload bytes (TaskResult.assignment_hash)."""
        return keccak256(self.envelope.payload)


@dataclass(frozen=True)
class TaskOutcome:
    """What one task produced: the result to submit, where the time went, lying KMS nodes."""

    result: task_pb2.TaskResult
    timings: TaskTimings
    bad_kms_nodes: tuple[int, ...] = ()

    @property
    def failed(self) -> bool:
        return self.result.WhichOneof("outcome") == "failure"


def _op_of(index: int, operation: task_pb2.Operation) -> Op:
    if not operation.HasField("operator"):
        raise ArityMismatch(f"operation {index} has no operator")
    inputs = [bytes(h) for h in operation.input_handles]
    outputs = [bytes(h) for h in operation.output_handles]
    if operation.operator != Operator.PLAINTEXT_TO_ENCRYPTED:
        if operation.plaintext:
            raise ArityMismatch(f"operation {index} carries a plaintext but is not an encryption")
        return Op.from_event(operation.operator, inputs, outputs)
    # The queue carries the public value in its type's exact byte size (task.proto), not the
    # event's 32-byte word, so the op is built here rather than by Op.from_event.
    if inputs or len(outputs) != 1:
        raise ArityMismatch("PLAINTEXT_TO_ENCRYPTED has no input handle and one output")
    vt = Handle.from_bytes(outputs[0]).value_type
    value = Value.from_plaintext(vt, bytes(operation.plaintext))
    return Op(Operator.PLAINTEXT_TO_ENCRYPTED, (), tuple(outputs), value)


def _event_word(value: Value) -> bytes:
    """The ABI word NoxCompute hashed for a PlaintextToEncrypted (see Value.from_word)."""
    vt = value.type
    if vt.kind == "fixed_bytes":
        return (int(value.value) << (256 - vt.bits)).to_bytes(32, "big")
    return (int(value.value) % 2**256).to_bytes(32, "big")


def _check_result_handles(tx: task_pb2.TransactionMessage, ops: Sequence[Op]) -> None:
    """Every output handle must be the one NoxCompute derives (DESIGN §5) from the op's
    operator, operands, caller and block: a relay cannot make the runner write a value under
    a handle of its choosing."""
    for index, (operation, op) in enumerate(zip(tx.operations, ops, strict=True)):
        operands = [_event_word(op.plaintext)] if op.plaintext is not None else list(op.inputs)
        for output_index, handle in enumerate(op.outputs):
            expected = result_handle(
                int(op.operator),
                operands,
                bytes(tx.compute_address),
                bytes(operation.caller),
                tx.block_timestamp,
                output_index,
                tx.chain_id,
                Handle.from_bytes(handle).value_type,
            ).to_bytes()
            if expected != handle:
                raise OutputsMismatch(
                    "an output handle is not the one NoxCompute derives",
                    metadata={"operation_index": str(index), "handle": handle.hex()},
                )


def _expected_handles(ops: Sequence[Op]) -> tuple[list[bytes], list[bytes]]:
    """(distinct fetched inputs in first-use order, all outputs in order), as task.proto says."""
    produced: set[bytes] = set()
    inputs: list[bytes] = []
    seen: set[bytes] = set()
    outputs: list[bytes] = []
    for op in ops:
        for h in op.inputs:
            if h not in produced and h not in seen:
                seen.add(h)
                inputs.append(h)
        for h in op.outputs:
            produced.add(h)
            outputs.append(h)
    return inputs, outputs


class TaskExecutor:
    """Opens assignments and runs tasks for one runner enclave key. Thread-safe: it holds
    no per-task state (that lives in `TaskRun`)."""

    def __init__(
        self,
        *,
        key: EnclaveKey,
        config: ExecutorConfig,
        directory: NodeDirectory,
        replay: ReplayCache,
        key_factory: Callable[[], RequesterKey] = RequesterKey.generate_secp256k1,
        tag_key: TagKey | None = None,
    ) -> None:
        self._key = key
        self.config = config
        # The value-tag key (`nox.runner.tagkey`), in memory only; tasks wait for it.
        self.tag_key = tag_key
        self._directory = directory
        self._replay = replay
        self._key_factory = key_factory
        # Checks the operands' producer bindings (an LRU of recovered signers).
        self.bindings = BindingVerifier(config.domain, directory)

    @property
    def address(self) -> bytes:
        """This runner's enclave address."""
        return self._key.address

    def __repr__(self) -> str:
        return f"TaskExecutor(runner=0x{self.address.hex()})"

    def require_tag_key(self) -> TagKey:
        """The value-tag key; NODE_NOT_READY until the agent fetched it."""
        if self.tag_key is None:
            raise NodeNotReady("this runner does not hold the value-tag key yet")
        return self.tag_key

    # ------------------------------------------------------------------ step 1: refuse or trust

    def open_assignment(self, envelope: SignedEnvelope, *, now: int) -> Assignment:
        """Verify an assignment and its transaction; raises (a refusal) when either fails.

        Its nonce is not recorded (it is presented again to gateway, KMS and orchestrator by
        design); the ClaimTasks answer around it carried the replay protection.
        """
        cfg = self.config
        verified = verify_envelope(
            envelope,
            task_pb2.TaskAssignment,
            domain=cfg.domain,
            audience=self.address,
            now=now,
            replay=RELAYED,
            max_skew=cfg.max_skew,
            max_ttl=cfg.max_envelope_ttl,
            authorize=lambda signer: self._require(signer, ROLE_ORCHESTRATOR, now),
        )
        message = verified.message
        if message.runner_address != self.address:
            raise AssignmentNotForThisRunner("the assignment names another runner")
        if message.lease_expires_at <= now:
            raise LeaseExpired(
                "the assignment's lease has ended", metadata={"task_id": message.task_id.hex()}
            )
        transaction = verify_envelope(
            message.transaction,
            task_pb2.TransactionMessage,
            domain=cfg.domain,
            audience=cfg.compute_address,
            now=now,
            replay=RELAYED,
            max_skew=cfg.max_skew,
            max_ttl=cfg.max_transaction_ttl,
            authorize=lambda signer: self._require(signer, ROLE_INGESTOR, now),
        ).message
        if transaction.compute_address != cfg.compute_address:
            raise AssignmentInconsistent("the transaction comes from another NoxCompute")
        if transaction.chain_id != cfg.domain.chain_id:
            raise AssignmentInconsistent("the transaction is for another chain")
        if len(transaction.transaction_hash) != 32 or message.task_id != task_id_for(
            transaction.chain_id, transaction.transaction_hash
        ):
            raise AssignmentInconsistent("the task id is not the transaction's")
        return Assignment(envelope, message, verified.signer, transaction)

    def _require(self, address: bytes, role: int, now: int) -> None:
        self._directory.require(address, role, now)

    # ------------------------------------------------------------------ step 2: plan

    def prepare(self, assignment: Assignment, *, now: int) -> TaskRun:
        """Check the assignment against its transaction and the limits; make the task's key.

        Raises TaskLimitExceeded, AssignmentInconsistent, LeaseExpired, or an engine error
        (with metadata `operation_index`) for an operation that cannot be built.
        """
        message = assignment.message
        limits = self.config.limits.tightened(message.limits)
        operations = assignment.transaction.operations
        if len(operations) > limits.max_operations:
            raise TaskLimitExceeded(
                f"{len(operations)} operations, limit {limits.max_operations} (max_operations)",
                metadata={"limit": "max_operations"},
            )
        if len(message.input_handles) > limits.max_input_handles:
            raise TaskLimitExceeded(
                f"{len(message.input_handles)} input handles, limit {limits.max_input_handles} "
                "(max_input_handles)",
                metadata={"limit": "max_input_handles"},
            )
        if len(message.output_handles) > limits.max_output_handles:
            raise TaskLimitExceeded(
                f"{len(message.output_handles)} outputs, limit {limits.max_output_handles} "
                "(max_output_handles)",
                metadata={"limit": "max_output_handles"},
            )
        ops: list[Op] = []
        last_log_index = -1
        for index, operation in enumerate(operations):
            if operation.log_index <= last_log_index:
                raise AssignmentInconsistent("operations are not in increasing log order")
            last_log_index = operation.log_index
            try:
                ops.append(_op_of(index, operation))
            except NoxError as exc:
                exc.metadata.setdefault("operation_index", str(index))
                raise
        try:
            _check_result_handles(assignment.transaction, ops)
        except InvalidArgument as exc:  # a malformed caller address, timestamp, ...
            if isinstance(exc, OutputsMismatch):
                raise
            raise AssignmentInconsistent(f"operations are malformed: {exc.message}") from None
        inputs, outputs = _expected_handles(ops)
        if inputs != list(message.input_handles):
            raise AssignmentInconsistent("input handles are not the transaction's fetched inputs")
        if outputs != list(message.output_handles):
            raise OutputsMismatch("output handles are not the transaction's outputs in order")
        deadline = min(message.lease_expires_at, message.assigned_at + limits.max_execution_seconds)
        if deadline <= now:
            raise LeaseExpired("the task's deadline has passed")
        return TaskRun(self, assignment, ops, limits, deadline, self._key_factory())

    # ------------------------------------------------------------------ steps 2-5 in one

    def run_task(
        self,
        assignment: Assignment,
        fetch: Callable[[gateway_pb2.GetOperandsRequest], gateway_pb2.GetOperandsResponse],
        *,
        gateway: bytes,
        clock: Callable[[], int],
    ) -> TaskOutcome:
        """Prepare, fetch (through `fetch`, the GetOperands call), execute and close one task.

        Never raises a NoxError: any failure becomes the outcome's TaskFailure. The per-task
        key and plaintexts are dropped before this returns, whatever happened.
        """
        run: TaskRun | None = None
        timings = TaskTimings()
        try:
            run = self.prepare(assignment, now=clock())
            timings = run.timings
            response = None
            if run.input_handles:
                request = run.operands_request(gateway=gateway, now=clock())
                started = time.perf_counter()
                try:
                    response = fetch(request)
                finally:
                    timings.rpc += time.perf_counter() - started
            result = run.execute(response, now=clock())
        except NoxError as exc:
            result = self.failure(assignment, exc)
        finally:
            if run is not None:
                run.close()
        bad = run.bad_kms_nodes if run is not None else ()
        return TaskOutcome(result, timings, bad)

    # ------------------------------------------------------------------ results

    def failure(self, assignment: Assignment, error: NoxError) -> task_pb2.TaskResult:
        """The TaskResult reporting `error` (reason, code, message, whether retrying may help;
        never a secret)."""
        failure = task_pb2.TaskFailure(
            reason=error.reason,
            code=int(error.code.value[0]),
            message=error.message[:512],
            retryable=error.retryable,
        )
        index = error.metadata.get("operation_index")
        if index is not None and index.isdigit():
            failure.operation_index = int(index)
        return task_pb2.TaskResult(
            task_id=assignment.task_id,
            assignment_hash=assignment.assignment_hash,
            failure=failure,
        )

    def submit_request(
        self, result: task_pb2.TaskResult, *, orchestrator: bytes, now: int
    ) -> orchestrator_pb2.SubmitResultRequest:
        """The runner-signed SubmitResult carrying `result`, addressed to `orchestrator`."""
        envelope = sign_envelope(
            self._key,
            orchestrator_pb2.SubmitResultPayload(result=result),
            domain=self.config.domain,
            audience=orchestrator,
            now=now,
            ttl=self.config.envelope_ttl,
        )
        return orchestrator_pb2.SubmitResultRequest(envelope=envelope)

    def sign(self, payload: Message, *, audience: bytes, now: int) -> SignedEnvelope:
        """Sign a payload message with the enclave key (heartbeats, claims, operand requests)."""
        return sign_envelope(
            self._key,
            payload,
            domain=self.config.domain,
            audience=audience,
            now=now,
            ttl=self.config.envelope_ttl,
        )

    def _verify_gateway(
        self, envelope: SignedEnvelope, *, gateway: bytes, now: int
    ) -> gateway_pb2.GetOperandsResponsePayload:
        cfg = self.config
        return verify_envelope(
            envelope,
            gateway_pb2.GetOperandsResponsePayload,
            domain=cfg.domain,
            audience=self.address,
            now=now,
            replay=self._replay,
            max_skew=cfg.max_skew,
            max_ttl=cfg.max_envelope_ttl,
            expected_signer=gateway,
            authorize=lambda signer: self._require(signer, ROLE_GATEWAY, now),
        ).message

    def require(self, address: bytes, role: int, now: int) -> None:
        """NodeDirectory for the KMS client: the registry this runner trusts."""
        self._require(address, role, now)
