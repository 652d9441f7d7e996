"""Typed errors of the Handle Gateway (each maps to one gRPC status through `nox.errors`).

Messages and metadata name handles and task ids in hex; never a plaintext or key material.
"""

from __future__ import annotations

from nox.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from nox.protocol import exceptions as _shared

# Shared with other services: each reason is declared once, in nox.protocol.exceptions.
BatchTooLarge = _shared.BatchTooLarge
InvalidRecord = _shared.InvalidRecord
OutputsMismatch = _shared.OutputsMismatch
ResultDisagreement = _shared.ResultDisagreement


class HandleExists(AlreadyExists):
    """A handle is stored already (an input or another task's output) and is never rewritten."""

    reason = "HANDLE_EXISTS"


class TaskConflict(AlreadyExists):
    """A task was published before with different outputs or value tags."""

    reason = "TASK_CONFLICT"


class HandleNotFound(NotFound):
    """A handle that the gateway does not store (yet)."""

    reason = "HANDLE_NOT_FOUND"


class StoreUnavailable(Unavailable):
    """The database cannot be reached or keeps failing; retrying later may help."""

    reason = "STORE_UNAVAILABLE"


# ---- GatewayService (the servicer's checks; see nox/gateway/service.py) ----------------


class AclDenied(PermissionDenied):
    """The on-chain ACL does not make the user a viewer of a requested handle."""

    reason = "ACL_DENIED"


class PlaintextInputRefused(FailedPrecondition):
    """EncryptInput with a plaintext in the clear: only inputs sealed to the gateway's enclave
    key are accepted (unless `dangerous_accept_plaintext_inputs`)."""

    reason = "PLAINTEXT_INPUT_REFUSED"


class RateLimited(ResourceExhausted):
    """Too many public calls from one client; retry later."""

    reason = "RATE_LIMITED"


class WrongChain(InvalidArgument):
    """A request or handle for a chain this gateway does not serve."""

    reason = "WRONG_CHAIN"
