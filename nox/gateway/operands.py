"""GetOperands: release a task's input ciphertexts and KMS partials to its assigned runner.

Checks, in order (cheap first; the request's nonce is recorded only once its signer is known
to be an active runner):

1. the request envelope: audience this gateway, window, signature, signer an active RUNNER,
   nonce never seen (`nox.crypto.envelope`, registry through `NodeDirectory`);
2. the relayed `TaskAssignment` envelope: audience that runner, signer an active
   ORCHESTRATOR, window (its nonce is not recorded: it is shown several times by design);
3. the assignment is the runner's (`runner_address`), for the request's task, its lease not
   over (LEASE_EXPIRED);
4. the handles: 1..max_batch_handles distinct 32-byte handles of this chain, each one of the
   assignment's `input_handles` (HANDLE_NOT_IN_ASSIGNMENT), each stored (HANDLE_NOT_FOUND);
5. the requester key is well formed (INVALID_REQUESTER_KEY).

Then the stored rows are checked against their producer bindings (STORED_RECORD_TAMPERED,
`nox.gateway.bindings`), then one KMS batch (t of n, the runner's envelope relayed as the
authorization and each target's binding, which each KMS node re-checks); inputs served for
the first time are then noted to be marked referenced (they no longer expire; written in
batches), and the gateway-signed answer goes to the runner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nox.crypto.envelope import Verified
from nox.gateway.bindings import check_stored
from nox.gateway.checks import check_handles, open_signed, request_hash, sign_response
from nox.gateway.context import ROLE_ORCHESTRATOR, ROLE_RUNNER, GatewayContext
from nox.gateway.store import StoredHandle
from nox.kms.exceptions import (
    AssignmentLeaseExpired,
    DelegationNotAuthorized,
    HandleNotInAssignment,
)
from nox.kms.wire import requester_key_from_proto
from nox.v1 import common_pb2, gateway_pb2
from nox.v1.task_pb2 import TaskAssignment


@dataclass(frozen=True)
class OperandRequest:
    """A GetOperands request that passed every check that needs no store or KMS."""

    runner: bytes
    payload: gateway_pb2.GetOperandsPayload
    assignment: TaskAssignment
    handles: list[bytes]


def typed_ciphertext(
    stored: StoredHandle, binding: common_pb2.HandleBinding
) -> common_pb2.TypedCiphertext:
    """A stored handle and its checked binding as the API's TypedCiphertext (what runners
    and users decrypt)."""
    r = stored.record
    return common_pb2.TypedCiphertext(
        handle=r.handle,
        ciphertext=r.ciphertext,
        ephemeral_public_key=r.ephemeral_public_key,
        nonce=r.nonce,
        binding=binding,
    )


def open_request(
    ctx: GatewayContext, request: gateway_pb2.GetOperandsRequest, now: int
) -> OperandRequest:
    """Checks 1 to 5 of the module docstring. Blocking: run it in a worker thread."""
    runner: Verified[gateway_pb2.GetOperandsPayload] = open_signed(
        ctx, request.envelope, gateway_pb2.GetOperandsPayload, role=ROLE_RUNNER, now=now
    )
    payload = runner.message
    assignment = open_signed(
        ctx,
        payload.assignment,
        TaskAssignment,
        role=ROLE_ORCHESTRATOR,
        now=now,
        audience=runner.signer,
        record=False,
    ).message
    if assignment.runner_address != runner.signer:
        raise DelegationNotAuthorized("the assignment is for another runner")
    if assignment.task_id != payload.task_id:
        raise DelegationNotAuthorized("the request and the assignment name different tasks")
    if assignment.lease_expires_at <= now:
        raise AssignmentLeaseExpired(
            "the assignment's lease has ended", metadata={"task_id": payload.task_id.hex()}
        )
    handles = check_handles(ctx, payload.handles)
    inputs = set(assignment.input_handles)
    for handle in handles:
        if handle not in inputs:
            raise HandleNotInAssignment(
                "handle is not an input of the assignment", metadata={"handle": "0x" + handle.hex()}
            )
    requester_key_from_proto(payload.requester_key)  # raises InvalidRequesterKey
    return OperandRequest(runner.signer, payload, assignment, handles)


async def get_operands(
    ctx: GatewayContext, request: gateway_pb2.GetOperandsRequest
) -> gateway_pb2.GetOperandsResponse:
    """The whole GetOperands call (see the module docstring)."""
    now = ctx.clock()
    checked = await asyncio.to_thread(open_request, ctx, request, now)
    stored = await ctx.store.require(checked.handles)
    bindings = await asyncio.to_thread(check_stored, ctx.bindings, stored, now=now)
    delegations = await ctx.kms.delegate(
        requester_key=checked.payload.requester_key,
        targets=[(s.record.handle, s.record.ephemeral_public_key) for s in stored],
        bindings=bindings,
        runner_request=request.envelope,
    )
    unreferenced = [s.record.handle for s in stored if s.expires_at is not None]
    # served to a task: these inputs no longer expire (nox/gateway/expiry.py), marked in batches
    if unreferenced and ctx.referenced.note(unreferenced):
        await ctx.referenced.flush(ctx.store)
    answer = gateway_pb2.GetOperandsResponsePayload(
        request_hash=request_hash(request.envelope),
        operands=[typed_ciphertext(s, b) for s, b in zip(stored, bindings, strict=True)],
        kms_delegations=delegations.envelopes,
        kms_threshold=delegations.threshold,
        kms_epoch=delegations.epoch,
    )
    envelope = sign_response(ctx, answer, audience=checked.runner, now=ctx.clock())
    return gateway_pb2.GetOperandsResponse(envelope=envelope)
