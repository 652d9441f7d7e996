"""From a queued message to a task: verify the ingestor's envelope, check the message.

`TransactionDecoder` is the `decode` of the shared queue consumer: it parses the
`SignedEnvelope`, verifies it as a broadcast from a ROLE_INGESTOR enclave (audience =
NoxCompute, nonce not recorded: JetStream redelivers the same envelope by design), checks the
TransactionMessage's shape and derives the task's handles. A message that fails here can
never be processed: the consumer parks it (UNDECODABLE, with this error's reason).
`check_task_msg_id` then checks the message's JetStream id against the signed transaction:
a message stored under another transaction's id is parked (QUEUE_MESSAGE_ID_MISMATCH).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.replay import RELAYED
from nox.errors import InvalidArgument
from nox.handles import ValueType
from nox.orchestrator.config import TaskLimitSettings
from nox.orchestrator.directory import NodeDirectory
from nox.orchestrator.exceptions import MessageMalformed, TaskLimitExceeded
from nox.queue import check_msg_id
from nox.v1 import common_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = [
    "TaskSpec",
    "TransactionDecoder",
    "check_limits",
    "check_task_msg_id",
    "task_id_for",
]

MAX_OPERATOR = 18
ROLE_INGESTOR = common_pb2.ROLE_INGESTOR


def task_id_for(chain_id: int, tx_hash: bytes) -> bytes:
    """keccak256(utf8("<chainId>:0x<txHash lowercase hex>")) (task.proto)."""
    return keccak256(f"{chain_id}:0x{tx_hash.hex()}".encode())


@dataclass(frozen=True)
class TaskSpec:
    """A verified transaction message and what a runner must be told about it."""

    task_id: bytes
    message: task_pb2.TransactionMessage
    envelope: SignedEnvelope
    ingestor: bytes
    input_handles: tuple[bytes, ...]
    output_handles: tuple[bytes, ...]
    operators: frozenset[int]


class TransactionDecoder:
    """Verify-then-parse of queued transaction messages (see the module docstring)."""

    def __init__(
        self,
        *,
        domain: Domain,
        compute_address: bytes,
        directory: NodeDirectory,
        clock: Callable[[], float],
        max_ttl: int,
        max_skew: int = 30,
    ) -> None:
        self._domain = domain
        self._compute = bytes(compute_address)
        self._directory = directory
        self._clock = clock
        self._max_ttl = max_ttl
        self._max_skew = max_skew

    def __call__(self, data: bytes) -> TaskSpec:
        try:
            envelope = SignedEnvelope.FromString(data)
        except DecodeError:
            raise MessageMalformed("queued message is not a SignedEnvelope") from None
        now = int(self._clock())

        def authorize(signer: bytes) -> None:
            self._directory.require(signer, ROLE_INGESTOR, now)

        verified = verify_envelope(
            envelope,
            task_pb2.TransactionMessage,
            domain=self._domain,
            audience=self._compute,
            now=now,
            replay=RELAYED,
            max_skew=self._max_skew,
            max_ttl=self._max_ttl,
            authorize=authorize,
        )
        return build_spec(verified.message, envelope, verified.signer, self._domain.chain_id,
                          self._compute)  # fmt: skip


def build_spec(
    msg: task_pb2.TransactionMessage,
    envelope: SignedEnvelope,
    ingestor: bytes,
    chain_id: int,
    compute_address: bytes,
) -> TaskSpec:
    """Check a TransactionMessage's shape and derive input and output handles."""
    if msg.chain_id != chain_id:
        raise MessageMalformed(f"message of chain {msg.chain_id}, this deployment is {chain_id}")
    if msg.compute_address != compute_address:
        raise MessageMalformed("message from another NoxCompute contract")
    if len(msg.transaction_hash) != 32 or len(msg.block_hash) != 32:
        raise MessageMalformed("transaction and block hashes must be 32 bytes")
    if not msg.operations:
        raise MessageMalformed("transaction message without operations")
    produced: set[bytes] = set()
    inputs: list[bytes] = []
    seen_inputs: set[bytes] = set()
    outputs: list[bytes] = []
    operators: set[int] = set()
    last_log = -1
    for index, op in enumerate(msg.operations):
        if not op.HasField("operator") or op.operator > MAX_OPERATOR:
            raise MessageMalformed(f"operation {index}: missing or unknown operator")
        if op.log_index <= last_log and index > 0:
            raise MessageMalformed(f"operation {index}: not in increasing log order")
        last_log = op.log_index
        if len(op.caller) != 20:
            raise MessageMalformed(f"operation {index}: caller must be 20 bytes")
        if not op.output_handles:
            raise MessageMalformed(f"operation {index}: no output handle")
        if (op.operator == 0) != (len(op.input_handles) == 0):
            raise MessageMalformed(f"operation {index}: inputs do not match the operator")
        if op.operator != 0 and op.plaintext:
            raise MessageMalformed(f"operation {index}: plaintext on a computed operation")
        if op.operator == 0:
            _check_plaintext(index, op)
        for handle in op.input_handles:
            if len(handle) != 32:
                raise MessageMalformed(f"operation {index}: input handle must be 32 bytes")
            if handle not in produced and handle not in seen_inputs:
                seen_inputs.add(handle)
                inputs.append(handle)
        for handle in op.output_handles:
            if len(handle) != 32:
                raise MessageMalformed(f"operation {index}: output handle must be 32 bytes")
            if handle in produced:
                raise MessageMalformed(f"operation {index}: duplicate output handle")
            produced.add(handle)
            outputs.append(handle)
        operators.add(op.operator)
    return TaskSpec(
        task_id=task_id_for(msg.chain_id, msg.transaction_hash),
        message=msg,
        envelope=envelope,
        ingestor=ingestor,
        input_handles=tuple(inputs),
        output_handles=tuple(outputs),
        operators=frozenset(operators),
    )


def _check_plaintext(index: int, op: task_pb2.Operation) -> None:
    """PlaintextToEncrypted: one output whose type (byte 30) fixes the plaintext's size."""
    if len(op.output_handles) != 1 or len(op.output_handles[0]) != 32:
        raise MessageMalformed(f"operation {index}: PlaintextToEncrypted has one output")
    try:
        vt = ValueType.from_code(op.output_handles[0][30])
    except InvalidArgument:
        raise MessageMalformed(f"operation {index}: unknown output type") from None
    if vt.is_dynamic or len(op.plaintext) != vt.byte_size:
        raise MessageMalformed(f"operation {index}: plaintext is not exactly its type's size")


def check_task_msg_id(spec: TaskSpec, msg_id: str, data: bytes) -> None:
    """The consumer's `check_id`: raise MessageIdMismatch unless the message was stored
    under its signed transaction's id (the task id) or its payload id."""
    check_msg_id(msg_id, spec.message.chain_id, spec.message.transaction_hash, data)


def check_limits(spec: TaskSpec, limits: TaskLimitSettings) -> None:
    """Raise TaskLimitExceeded when the task is over the declared limits."""
    over = []
    if len(spec.message.operations) > limits.max_operations:
        over.append("operations")
    if len(spec.input_handles) > limits.max_input_handles:
        over.append("input handles")
    if len(spec.output_handles) > limits.max_output_handles:
        over.append("output handles")
    if over:
        raise TaskLimitExceeded(f"task exceeds its limits: {', '.join(over)}")
