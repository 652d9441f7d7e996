"""Errors of the auditor commands.

A node or task that fails an audit check raises one of these with a reason naming the check;
the registry audit turns them into a FAIL verdict for that node, the task audit into a
broken link of the evidence chain.
"""

from __future__ import annotations

from nox.errors import InvalidArgument, NotFound, PermissionDenied


class AuditInputError(InvalidArgument):
    """The auditor's input (addresses, collateral files, evidence bytes) cannot be used."""

    reason = "AUDIT_INPUT_INVALID"


class AuditCheckFailed(PermissionDenied):
    """A registration or a piece of task evidence failed a check; the reason names which."""

    reason = "AUDIT_CHECK_FAILED"


class CollateralUnavailable(AuditInputError):
    """No collateral was given (or fetched) for a quote's platform."""

    reason = "COLLATERAL_UNAVAILABLE"


class TaskNotFound(NotFound):
    """The gateway store has no record of the task."""

    reason = "TASK_NOT_FOUND"
