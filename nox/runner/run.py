"""A runner's task in progress (`TaskRun`): its per-task key, the operand request, the
checks of the gateway's and KMS nodes' answers, execution, encryption, binding and tagging
of the outputs, and `close`, which drops the key and every plaintext.

`nox.runner.executor.TaskExecutor.prepare` makes one; the executor module's docstring tells
the whole path of a task and what forward secrecy rests on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nox.compute import Op, Value, run_ops, spec
from nox.crypto import ecies
from nox.crypto.binding import (
    SALT_SIZE,
    BoundRow,
    ciphertext_hash,
    prove_key,
    sign_bindings,
)
from nox.crypto.delegation import RequesterKey, RequesterKeyKind
from nox.crypto.exceptions import BindingInvalid
from nox.crypto.hashing import keccak256
from nox.errors import InvalidArgument, NoxError
from nox.handles import Handle, value_tag
from nox.kms.client import collect_partials, combine_targets
from nox.kms.wire import binding_from_proto, requester_key_to_proto
from nox.runner.exceptions import (
    LeaseExpired,
    OperandsInvalid,
    OutputsMismatch,
    ResponseMismatch,
    TaskLimitExceeded,
)
from nox.v1 import common_pb2, gateway_pb2, task_pb2

if TYPE_CHECKING:
    from nox.runner.executor import Assignment, RunnerLimits, TaskExecutor

__all__ = ["TaskRun", "TaskTimings"]


@dataclass
class TaskTimings:
    """Seconds spent per kind of work in one task (the agent adds the RPC time)."""

    crypto: float = 0.0
    compute: float = 0.0
    rpc: float = 0.0


class TaskRun:
    """One task in progress: its ops, limits, deadline and per-task key. Use once, then
    `close` (the agent always does, in a `finally`)."""

    def __init__(
        self,
        executor: TaskExecutor,
        assignment: Assignment,
        ops: list[Op],
        limits: RunnerLimits,
        deadline: int,
        requester_key: RequesterKey,
    ) -> None:
        self._executor = executor
        self.assignment = assignment
        self._ops = ops
        self.limits = limits
        self.deadline = deadline
        self._requester_key: RequesterKey | None = requester_key
        self._request: gateway_pb2.GetOperandsRequest | None = None
        self._gateway: bytes | None = None
        self._values: dict[bytes, Value] = {}
        self.timings = TaskTimings()
        # KMS nodes whose answers were rejected (named by index; 0 = envelope refused).
        self.bad_kms_nodes: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"TaskRun(task_id=0x{self.assignment.task_id.hex()}, key=<redacted>)"

    @property
    def input_handles(self) -> list[bytes]:
        """The handles to fetch from the gateway (none when every op is an encryption)."""
        return [bytes(h) for h in self.assignment.message.input_handles]

    @property
    def holds_key(self) -> bool:
        """Whether the per-task key is still referenced (False after `close`)."""
        return self._requester_key is not None

    def _key(self) -> RequesterKey:
        if self._requester_key is None:
            raise LeaseExpired("the task was closed; its key is gone")
        return self._requester_key

    def operands_request(self, *, gateway: bytes, now: int) -> gateway_pb2.GetOperandsRequest:
        """The runner-signed GetOperands for every input handle, to `gateway`, carrying the
        per-task key and the assignment envelope byte for byte."""
        started = time.perf_counter()
        payload = gateway_pb2.GetOperandsPayload(
            task_id=self.assignment.task_id,
            assignment=self.assignment.envelope,
            requester_key=requester_key_to_proto(self._key().public),
            handles=self.input_handles,
        )
        envelope = self._executor.sign(payload, audience=gateway, now=now)
        self._request = gateway_pb2.GetOperandsRequest(envelope=envelope)
        self._gateway = bytes(gateway)
        self.timings.crypto += time.perf_counter() - started
        return self._request

    def execute(
        self, response: gateway_pb2.GetOperandsResponse | None, *, now: int
    ) -> task_pb2.TaskResult:
        """Decrypt the operands, run the ops, encrypt the outputs: the successful TaskResult.

        `response` is the gateway's answer to `operands_request` (None when the task fetches
        nothing). Raises a NoxError for any failure; the caller turns it into a TaskFailure.
        """
        if now > self.deadline:
            if now >= self.assignment.message.lease_expires_at:
                raise LeaseExpired("the assignment's lease ended during the task")
            raise TaskLimitExceeded("the task's execution time ran out (max_execution_seconds)")
        started = time.perf_counter()
        inputs = self._decrypt_operands(response, now=now)
        self.timings.crypto += time.perf_counter() - started
        started = time.perf_counter()
        produced = self._run(inputs)
        self.timings.compute += time.perf_counter() - started
        started = time.perf_counter()
        try:
            outputs = self._encrypt(produced)
            signature = self._bind(outputs)
        finally:
            self.timings.crypto += time.perf_counter() - started
        return task_pb2.TaskResult(
            task_id=self.assignment.task_id,
            assignment_hash=self.assignment.assignment_hash,
            outputs=task_pb2.TaskOutputs(ciphertexts=outputs, binding_signature=signature),
        )

    def _bind(self, outputs: Sequence[common_pb2.TypedCiphertext]) -> bytes:
        """The runner's one binding signature over all outputs (`nox.crypto.binding`)."""
        rows = [
            BoundRow(
                bytes(o.handle),
                bytes(o.ephemeral_public_key),
                bytes(o.nonce),
                bytes(o.ciphertext),
                bytes(o.value_tag),
                bytes(o.value_tag_salt),
            )
            for o in outputs
        ]
        executor = self._executor
        bindings = sign_bindings(
            executor._key, executor.config.domain, bytes(self.assignment.task_id), rows
        )
        return bindings[0].signature

    def _check_bindings(
        self, handles: Sequence[bytes], operands: Sequence[common_pb2.TypedCiphertext], now: int
    ) -> None:
        """Every operand is what an attested producer stored under its handle: its binding
        covers (handle, K) and the ciphertext and nonce as received (BINDING_MISSING,
        BINDING_INVALID). The value tag's commitment is salted; the gateway checks it."""
        targets = []
        for handle, operand in zip(handles, operands, strict=True):
            binding = binding_from_proto(operand.binding) if operand.HasField("binding") else None
            if binding is not None and binding.ciphertext_hash != ciphertext_hash(
                bytes(operand.nonce), bytes(operand.ciphertext)
            ):
                raise BindingInvalid(
                    "the operand's ciphertext is not the one its producer bound",
                    metadata={"handle": handle.hex()},
                )
            targets.append((handle, bytes(operand.ephemeral_public_key), binding))
        self._executor.bindings.verify(targets, now=now)

    def _decrypt_operands(
        self, response: gateway_pb2.GetOperandsResponse | None, *, now: int
    ) -> dict[bytes, Value]:
        handles = self.input_handles
        if not handles:
            return {}
        if response is None or self._request is None or self._gateway is None:
            raise OperandsInvalid("the task's operands were not fetched")
        executor = self._executor
        payload = executor._verify_gateway(response.envelope, gateway=self._gateway, now=now)
        if payload.request_hash != keccak256(self._request.envelope.payload):
            raise ResponseMismatch("the gateway answered another request")
        public = executor.config.kms_public
        if payload.kms_epoch != public.epoch:
            raise OperandsInvalid("the delegations are for another KMS key epoch")
        if len(payload.operands) != len(handles):
            raise OperandsInvalid("not one operand per requested handle")
        ciphertexts: list[ecies.Ciphertext] = []
        for handle, operand in zip(handles, payload.operands, strict=True):
            if operand.handle != handle:
                raise OperandsInvalid("operands out of order or for other handles")
        self._check_bindings(handles, payload.operands, now)
        for handle, operand in zip(handles, payload.operands, strict=True):
            if len(operand.ciphertext) > self.limits.max_ciphertext_bytes:
                raise TaskLimitExceeded(
                    f"operand ciphertext of {len(operand.ciphertext)} bytes, "
                    f"limit {self.limits.max_ciphertext_bytes} (max_ciphertext_bytes)",
                    metadata={"limit": "max_ciphertext_bytes", "handle": handle.hex()},
                )
            try:
                ciphertexts.append(
                    ecies.Ciphertext(
                        bytes(operand.ciphertext),
                        bytes(operand.ephemeral_public_key),
                        bytes(operand.nonce),
                    )
                )
            except InvalidArgument as exc:
                raise OperandsInvalid(
                    f"malformed operand ciphertext: {exc.message}",
                    metadata={"handle": handle.hex()},
                ) from None
        targets = [(h, ct.ephemeral_public_key) for h, ct in zip(handles, ciphertexts, strict=True)]
        collected = collect_partials(
            payload.kms_delegations,
            targets=targets,
            public=public,
            requester_kind=RequesterKeyKind.SECP256K1,
            domain=executor.config.domain,
            audience=self._gateway,
            registry=executor,
            now=now,
        )
        combinations = combine_targets(
            collected, targets=targets, public=public, requester_key=self._key()
        )
        bad = {b.index for b in collected.rejected}
        for combination in combinations:
            bad.update(combination.bad_indices)
        self.bad_kms_nodes = tuple(sorted(bad))
        values: dict[bytes, Value] = {}
        for (handle, _), ct, combination in zip(targets, ciphertexts, combinations, strict=True):
            plaintext = ecies.decrypt_with_shared_point(combination.shared_point, ct, handle)
            values[handle] = Value.from_plaintext(Handle.from_bytes(handle).value_type, plaintext)
        self._values = values
        return values

    def _run(self, inputs: dict[bytes, Value]) -> dict[bytes, Value]:
        available: dict[bytes, Value] = dict(inputs)
        produced: dict[bytes, Value] = {}
        self._values = available
        for index, op in enumerate(self._ops):
            try:
                out = run_ops([op], available)
            except NoxError as exc:
                exc.metadata.setdefault("operation_index", str(index))
                exc.metadata.setdefault("operator", spec(op.operator).operator.name)
                raise
            available.update(out)
            produced.update(out)
        if list(produced) != list(self.assignment.message.output_handles):
            raise OutputsMismatch("the computed outputs are not the assignment's")
        return produced

    def _encrypt(self, produced: dict[bytes, Value]) -> list[common_pb2.TypedCiphertext]:
        kms_key = self._executor.config.kms_public.public_key
        tag_key = self._executor.require_tag_key()
        limit = self.limits.max_ciphertext_bytes
        outputs: list[common_pb2.TypedCiphertext] = []
        for handle, value in produced.items():
            plaintext = value.to_plaintext()
            ct, scalar = ecies.encrypt_keeping_scalar(kms_key, plaintext, handle)
            key_proof = prove_key(self._executor.config.domain, handle, scalar)
            del scalar  # k opens the output: only the proof that the runner made K is kept
            if len(ct.ciphertext) > limit:
                raise TaskLimitExceeded(
                    f"output ciphertext of {len(ct.ciphertext)} bytes, limit {limit} "
                    "(max_ciphertext_bytes)",
                    metadata={"limit": "max_ciphertext_bytes", "handle": handle.hex()},
                )
            outputs.append(
                common_pb2.TypedCiphertext(
                    handle=handle,
                    ciphertext=ct.ciphertext,
                    ephemeral_public_key=ct.ephemeral_public_key,
                    nonce=ct.nonce,
                    value_tag=value_tag(tag_key, handle, plaintext),
                    value_tag_salt=os.urandom(SALT_SIZE),
                    ephemeral_key_proof=key_proof,
                )
            )
        return outputs

    def close(self) -> None:
        """Drop the per-task key and every plaintext this run references (see the module
        docstring for what that does and does not guarantee)."""
        self._requester_key = None
        self._values.clear()
        self._values = {}
