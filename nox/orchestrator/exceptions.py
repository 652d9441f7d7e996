"""Errors of the orchestrator (DESIGN §8); reasons are in protos/nox/v1/error.proto."""

from __future__ import annotations

from nox.errors import (
    FailedPrecondition,
    InvalidArgument,
)
from nox.protocol import exceptions as _shared

# Shared with other services: each reason is declared once, in nox.protocol.exceptions.
LeaseExpired = _shared.LeaseExpired
NodeNotReady = _shared.NodeNotReady
OutputsMismatch = _shared.OutputsMismatch
ResultDisagreement = _shared.ResultDisagreement
TaskLimitExceeded = _shared.TaskLimitExceeded
TaskNotFound = _shared.TaskNotFound

# The orchestrator's name for the shared NODE_NOT_READY error.
NotReady = NodeNotReady


class LeaseNotHeld(FailedPrecondition):
    """The caller does not hold the task's current lease (reassigned, or another runner's)."""

    reason = "LEASE_NOT_HELD"


class MessageMalformed(InvalidArgument):
    """A queued transaction message that cannot be decoded or is inconsistent."""

    reason = "MESSAGE_MALFORMED"


class RunnerUnknown(FailedPrecondition):
    """A runner claimed tasks before announcing its capacity with a heartbeat."""


class InvalidOrchestratorSettings(InvalidArgument):
    """Orchestrator settings that cannot work."""


class TransactionOrphaned(FailedPrecondition):
    """The transaction's block was reorganized away; its task is withdrawn, not computed."""

    reason = "TRANSACTION_ORPHANED"


class ProducerMissing(FailedPrecondition):
    """A queued task has waited past `producer_missing_after` for an input whose producing
    transaction never arrived (lost or suppressed): reported, the task stays queued."""

    reason = "PRODUCER_MISSING"
