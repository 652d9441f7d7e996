"""Errors of the runner: task refusals, failures reported in a TaskFailure, readiness."""

from __future__ import annotations

from nox.errors import (
    InvalidArgument,
    PermissionDenied,
)
from nox.protocol import exceptions as _shared

# Shared with other services: each reason is declared once, in nox.protocol.exceptions.
InvalidRecord = _shared.InvalidRecord
LeaseExpired = _shared.LeaseExpired
NodeNotReady = _shared.NodeNotReady
OutputsMismatch = _shared.OutputsMismatch
TaskLimitExceeded = _shared.TaskLimitExceeded

# A gateway answer with malformed or out-of-order operands: the shared INVALID_RECORD error.
OperandsInvalid = InvalidRecord


class AssignmentNotForThisRunner(PermissionDenied):
    """A validly signed assignment that names another runner."""


class AssignmentInconsistent(InvalidArgument):
    """An assignment whose handles, task id or chain do not match its transaction."""


class ResponseMismatch(InvalidArgument):
    """A signed answer whose request_hash is not the hash of the request it answers."""
