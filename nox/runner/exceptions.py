"""Errors of the runner: task refusals, failures reported in a TaskFailure, readiness."""

from __future__ import annotations

from nox.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)


class TaskLimitExceeded(ResourceExhausted):
    """The task exceeds its declared limits (operations, handles, sizes, execution time)."""

    reason = "TASK_LIMIT_EXCEEDED"


class LeaseExpired(DeadlineExceeded):
    """The assignment's lease ended before the runner could start or finish it."""

    reason = "LEASE_EXPIRED"


class NodeNotReady(Unavailable):
    """This runner is not attested and registered (yet, or any more), so it takes no work."""

    reason = "NODE_NOT_READY"


class AssignmentNotForThisRunner(PermissionDenied):
    """A validly signed assignment that names another runner."""


class AssignmentInconsistent(InvalidArgument):
    """An assignment whose handles, task id or chain do not match its transaction."""


class OutputsMismatch(InvalidArgument):
    """The computed outputs are not exactly the assignment's output handles, in order."""

    reason = "OUTPUTS_MISMATCH"


class OperandsInvalid(InvalidArgument):
    """A gateway answer with malformed or out-of-order operands, or for another request."""

    reason = "INVALID_RECORD"


class ResponseMismatch(InvalidArgument):
    """A signed answer whose request_hash is not the hash of the request it answers."""
