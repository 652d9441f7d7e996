"""Errors that more than one service reports, each reason declared once (DESIGN §9).

The runner, the orchestrator, the gateway and the KMS all refuse an ended lease, a task over
its limits, outputs that are not the assignment's, and so on. Each such reason has exactly
one class, here; the services' own `exceptions.py` re-export the ones they raise, so a
client that rebuilds an error from its reason (`nox.rpc.client.class_for_reason`) always
finds one class.
"""

from __future__ import annotations

from nox.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "BatchTooLarge",
    "InvalidRecord",
    "LeaseExpired",
    "NodeNotReady",
    "OutputsMismatch",
    "ResultDisagreement",
    "TaskLimitExceeded",
    "TaskNotFound",
]


class LeaseExpired(DeadlineExceeded):
    """The task's lease ended before the request: the task may have another runner now."""

    reason = "LEASE_EXPIRED"
    # Retryable as DEADLINE_EXCEEDED is: the task runs again under a new lease.


class TaskLimitExceeded(ResourceExhausted):
    """A task over one of its declared limits (operations, handles, sizes, time)."""

    reason = "TASK_LIMIT_EXCEEDED"


class OutputsMismatch(InvalidArgument):
    """A result whose outputs are not exactly the assignment's output handles, in order."""

    reason = "OUTPUTS_MISMATCH"


class ResultDisagreement(FailedPrecondition):
    """Redundant runners' value tags differ: nothing is stored, the runners are reported."""

    reason = "RESULT_DISAGREEMENT"


class NodeNotReady(Unavailable):
    """The node is not attested, registered or connected yet; retry later."""

    reason = "NODE_NOT_READY"


class BatchTooLarge(ResourceExhausted):
    """More handles or targets in one request than the server's batch limit."""

    reason = "BATCH_TOO_LARGE"


class InvalidRecord(InvalidArgument):
    """A stored or transmitted ciphertext record of the wrong shape (K, nonce, tag sizes)."""

    reason = "INVALID_RECORD"


class TaskNotFound(NotFound):
    """No task with this id is known (to the orchestrator asked, or in the evidence given)."""

    reason = "TASK_NOT_FOUND"
