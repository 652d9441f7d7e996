"""Typed errors of the Handle Gateway (each maps to one gRPC status through `nox.errors`).

Messages and metadata name handles and task ids in hex; never a plaintext or key material.
"""

from __future__ import annotations

from nox.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)


class HandleExists(AlreadyExists):
    """A handle is stored already (an input or another task's output) and is never rewritten."""

    reason = "HANDLE_EXISTS"


class TaskConflict(AlreadyExists):
    """A task was published before with different outputs or value tags."""

    reason = "TASK_CONFLICT"


class HandleNotFound(NotFound):
    """A handle that the gateway does not store (yet)."""

    reason = "HANDLE_NOT_FOUND"


class InvalidRecord(InvalidArgument):
    """A record for the store is malformed: wrong field length, duplicate handle, empty task."""

    reason = "INVALID_RECORD"


class BatchTooLarge(ResourceExhausted):
    """A batch names more handles than the store answers in one consistent read."""

    reason = "BATCH_TOO_LARGE"


class StoreUnavailable(Unavailable):
    """The database cannot be reached or keeps failing; retrying later may help."""

    reason = "STORE_UNAVAILABLE"


# ---- GatewayService (the servicer's checks; see nox/gateway/service.py) ----------------


class AclDenied(PermissionDenied):
    """The on-chain ACL does not make the user a viewer of a requested handle."""

    reason = "ACL_DENIED"


class OutputsMismatch(InvalidArgument):
    """A result's outputs are not exactly the assignment's output handles, in order."""

    reason = "OUTPUTS_MISMATCH"


class ResultDisagreement(FailedPrecondition):
    """Redundant executions of one task returned different value tags; nothing was stored."""

    reason = "RESULT_DISAGREEMENT"


class RateLimited(ResourceExhausted):
    """Too many public calls from one client; retry later."""

    reason = "RATE_LIMITED"


class WrongChain(InvalidArgument):
    """A request or handle for a chain this gateway does not serve."""

    reason = "WRONG_CHAIN"


class StoredRecordTampered(DataLoss):
    """A stored row that no longer matches its producer binding: refused and logged."""

    reason = "STORED_RECORD_TAMPERED"
