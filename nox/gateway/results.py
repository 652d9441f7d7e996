"""StoreResults: check a task's signed executions and store all its outputs atomically.

Checks, in order (nothing is stored unless all pass):

1. the request envelope: audience this gateway, signer an active ORCHESTRATOR, nonce new;
2. per execution, the runner's SubmitResult envelope (audience that orchestrator, signer an
   active RUNNER) and the TaskAssignment it answers (audience that runner, signer an active
   ORCHESTRATOR); relayed credentials, so their nonces are not recorded;
3. the assignment is the runner's and the request's task; the result names the task and
   the assignment (assignment_hash = keccak256 of the assignment's payload bytes); it holds
   outputs, not a failure, and its outputs are exactly the assignment's output handles in
   order (OUTPUTS_MISMATCH), each a well-formed ciphertext with its value tag
   (INVALID_RECORD), within the task's ciphertext size limit;
4. under redundancy, as many executions as the assignment asks, from distinct runners, with
   the same outputs and value tags (RESULT_DISAGREEMENT otherwise).

Storing is `HandleStore.publish_task`: one transaction; an identical re-publication
(same handles and value tags) answers UNCHANGED; another value under a stored handle
answers ALREADY_EXISTS (TASK_CONFLICT or HANDLE_EXISTS) and changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nox.crypto.hashing import keccak256
from nox.errors import InvalidArgument
from nox.gateway.checks import check_handles, open_signed, request_hash, sign_response
from nox.gateway.context import ROLE_ORCHESTRATOR, ROLE_RUNNER, GatewayContext
from nox.gateway.exceptions import OutputsMismatch, ResultDisagreement
from nox.gateway.store import HandleRecord, PublishOutcome
from nox.kms.exceptions import DelegationNotAuthorized
from nox.protocol.exceptions import TaskLimitExceeded
from nox.v1 import gateway_pb2
from nox.v1.orchestrator_pb2 import SubmitResultPayload
from nox.v1.task_pb2 import TaskAssignment

MAX_EXECUTIONS = 16

_OUTCOMES = {
    PublishOutcome.CREATED: gateway_pb2.STORE_OUTCOME_CREATED,
    PublishOutcome.UNCHANGED: gateway_pb2.STORE_OUTCOME_UNCHANGED,
}


@dataclass(frozen=True)
class CheckedResults:
    """A StoreResults request that passed every check: what to store, and for whom."""

    orchestrator: bytes
    task_id: bytes
    records: list[HandleRecord]


def _execution(
    ctx: GatewayContext,
    execution: gateway_pb2.SignedExecution,
    *,
    orchestrator: bytes,
    task_id: bytes,
    now: int,
) -> tuple[bytes, TaskAssignment, list[HandleRecord]]:
    result = open_signed(
        ctx, execution.result, SubmitResultPayload, role=ROLE_RUNNER, now=now,
        audience=orchestrator, record=False,
    )  # fmt: skip
    runner = result.signer
    assignment = open_signed(
        ctx, execution.assignment, TaskAssignment, role=ROLE_ORCHESTRATOR, now=now,
        audience=runner, record=False,
    ).message  # fmt: skip
    task_result = result.message.result
    if assignment.runner_address != runner:
        raise DelegationNotAuthorized("the result's signer is not the assignment's runner")
    if assignment.task_id != task_id or task_result.task_id != task_id:
        raise InvalidArgument("executions must all be of the request's task")
    if task_result.assignment_hash != keccak256(execution.assignment.payload):
        raise InvalidArgument("the result answers another assignment")
    if task_result.WhichOneof("outcome") != "outputs":
        raise OutputsMismatch("a failed result has no outputs to store")
    expected = check_handles(ctx, assignment.output_handles, field="output_handles")
    ciphertexts = task_result.outputs.ciphertexts
    if [bytes(c.handle) for c in ciphertexts] != expected:
        raise OutputsMismatch("outputs are not exactly the assignment's output handles")
    limits = assignment.limits if assignment.HasField("limits") else None
    records = []
    for c in ciphertexts:
        if limits is not None and len(c.ciphertext) > limits.max_ciphertext_bytes:
            raise TaskLimitExceeded("an output ciphertext exceeds the task's limit")
        records.append(
            HandleRecord(
                handle=bytes(c.handle),
                ciphertext=bytes(c.ciphertext),
                ephemeral_public_key=bytes(c.ephemeral_public_key),
                nonce=bytes(c.nonce),
                value_tag=bytes(c.value_tag),
            )
        )
    return runner, assignment, records


def open_request(
    ctx: GatewayContext, request: gateway_pb2.StoreResultsRequest, now: int
) -> CheckedResults:
    """Checks 1 to 4 of the module docstring. Blocking: run it in a worker thread."""
    outer = open_signed(
        ctx, request.envelope, gateway_pb2.StoreResultsPayload, role=ROLE_ORCHESTRATOR, now=now
    )
    payload = outer.message
    task_id = bytes(payload.task_id)
    if len(task_id) != 32:
        raise InvalidArgument("task id must be 32 bytes", metadata={"field": "task_id"})
    if not 0 < len(payload.executions) <= MAX_EXECUTIONS:
        raise InvalidArgument(
            f"1..{MAX_EXECUTIONS} executions are needed", metadata={"field": "executions"}
        )
    runners: set[bytes] = set()
    first: list[HandleRecord] | None = None
    redundancy = 1
    for execution in payload.executions:
        runner, assignment, records = _execution(
            ctx, execution, orchestrator=outer.signer, task_id=task_id, now=now
        )
        if runner in runners:
            raise InvalidArgument("two executions by the same runner")
        runners.add(runner)
        redundancy = max(redundancy, assignment.redundancy)
        if first is None:
            first = records
        elif [(r.handle, r.value_tag) for r in records] != [(r.handle, r.value_tag) for r in first]:
            raise ResultDisagreement(
                "redundant executions disagree", metadata={"task_id": "0x" + task_id.hex()}
            )
    if len(runners) < redundancy:
        raise InvalidArgument(
            f"the task asks for {redundancy} executions, {len(runners)} given",
            metadata={"field": "executions"},
        )
    assert first is not None
    return CheckedResults(outer.signer, task_id, first)


async def store_results(
    ctx: GatewayContext, request: gateway_pb2.StoreResultsRequest
) -> gateway_pb2.StoreResultsResponse:
    """The whole StoreResults call (see the module docstring)."""
    checked = await asyncio.to_thread(open_request, ctx, request, ctx.clock())
    outcome = await ctx.store.publish_task(
        checked.task_id, checked.records, evidence=request.envelope.SerializeToString()
    )
    answer = gateway_pb2.StoreResultsResponsePayload(
        request_hash=request_hash(request.envelope),
        task_id=checked.task_id,
        stored_handles=[
            gateway_pb2.StoredHandle(handle=r.handle, outcome=_OUTCOMES[outcome])
            for r in checked.records
        ],
    )
    envelope = sign_response(ctx, answer, audience=checked.orchestrator, now=ctx.clock())
    return gateway_pb2.StoreResultsResponse(envelope=envelope)
