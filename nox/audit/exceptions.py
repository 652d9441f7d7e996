"""Errors of the auditor commands.

A node or task that fails an audit check raises one of these with a reason naming the check;
the registry audit turns them into a FAIL verdict for that node, the task audit into a
broken link of the evidence chain.
"""

from __future__ import annotations

from nox.errors import InvalidArgument, PermissionDenied
from nox.protocol import exceptions as _shared

# Shared with other services: each reason is declared once, in nox.protocol.exceptions.
TaskNotFound = _shared.TaskNotFound


class AuditInputError(InvalidArgument):
    """The auditor's input (addresses, collateral files, evidence bytes) cannot be used."""

    reason = "AUDIT_INPUT_INVALID"


class AuditCheckFailed(PermissionDenied):
    """A registration or a piece of task evidence failed a check; the reason names which."""

    reason = "AUDIT_CHECK_FAILED"


class QuoteNotFound(AuditCheckFailed):
    """No registration event carries a quote matching the on-chain quote hash."""

    reason = "QUOTE_NOT_FOUND"


class QuoteUnsupported(AuditCheckFailed):
    """A registered quote is not a TDX quote."""

    reason = "QUOTE_UNSUPPORTED"


class WorkloadIdMismatch(AuditCheckFailed):
    """The workload id computed from the quote differs from the one the registry records."""

    reason = "WORKLOAD_ID_MISMATCH"


class CollateralUnavailable(AuditInputError):
    """No collateral was given (or fetched) for a quote's platform."""

    reason = "COLLATERAL_UNAVAILABLE"
