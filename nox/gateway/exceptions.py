"""Typed errors of the Handle Gateway (each maps to one gRPC status through `nox.errors`).

Messages and metadata name handles and task ids in hex; never a plaintext or key material.
"""

from __future__ import annotations

from nox.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted, Unavailable


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
