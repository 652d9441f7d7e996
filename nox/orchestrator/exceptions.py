"""Errors of the orchestrator (DESIGN §8); reasons are in protos/nox/v1/error.proto."""

from __future__ import annotations

from nox.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)


class TaskNotFound(NotFound):
    """No task with this id is known to this orchestrator instance."""

    reason = "TASK_NOT_FOUND"


class LeaseExpired(DeadlineExceeded):
    """The task's lease ran out before the call; the task may be reassigned."""

    reason = "LEASE_EXPIRED"


class LeaseNotHeld(FailedPrecondition):
    """The caller does not hold the task's current lease (reassigned, or another runner's)."""

    reason = "LEASE_NOT_HELD"


class TaskLimitExceeded(ResourceExhausted):
    """The task exceeds the orchestrator's declared limits."""

    reason = "TASK_LIMIT_EXCEEDED"


class ResultDisagreement(FailedPrecondition):
    """Redundant runners returned different value tags; nothing is stored."""

    reason = "RESULT_DISAGREEMENT"


class MessageMalformed(InvalidArgument):
    """A queued transaction message that cannot be decoded or is inconsistent."""

    reason = "MESSAGE_MALFORMED"


class OutputsMismatch(InvalidArgument):
    """A result whose outputs are not exactly the assignment's output handles, in order."""

    reason = "OUTPUTS_MISMATCH"


class RunnerUnknown(FailedPrecondition):
    """A runner claimed tasks before announcing its capacity with a heartbeat."""


class NotReady(Unavailable):
    """This orchestrator is not attested, registered or connected yet, so it refuses work."""

    reason = "NODE_NOT_READY"


class InvalidOrchestratorSettings(InvalidArgument):
    """Orchestrator settings that cannot work."""
