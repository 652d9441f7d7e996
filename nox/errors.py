"""The root of every typed error in `nox`, and its mapping to gRPC status codes.

Each error carries a stable `reason` (UPPER_SNAKE, AIP-193), a canonical gRPC code and
whether retrying the same request may succeed (`retryable`, as temporalio's
`ApplicationError(non_retryable=...)`: callers decide retries from the error, never from a
set of status codes). Every reason is declared by exactly one class, and every reason of
`protos/nox/v1/error.proto`'s `ErrorReason` has its class (a test checks both). The
server interceptor in `nox.rpc` turns one into a `google.rpc.Status` with a single
`ErrorInfo` (domain `nox.v1`); the client side rebuilds the typed error from the reason.
Packages define their errors in their own `exceptions.py` as subclasses of these.

Messages must never contain plaintext, private keys or key shares.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

DOMAIN = "nox.v1"
# ErrorInfo metadata key carrying an instance's `retryable` where it differs from its class's.
RETRYABLE_KEY = "retryable"


class NoxError(Exception):
    """Base class of every error the network reports; INTERNAL unless a subclass says otherwise."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    # Whether the same request may succeed later (a dependency down, a deadline). A class
    # sets it for its reason; an instance may override it (it then travels in the metadata).
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        if retryable is not None and retryable != type(self).retryable:
            self.retryable = retryable
            self.metadata[RETRYABLE_KEY] = "true" if retryable else "false"

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidArgument(NoxError):
    """Malformed input: wrong length, unknown type, undecodable bytes."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class Unauthenticated(NoxError):
    """A signature that does not verify or cannot be recovered."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(NoxError):
    """A valid signer without the right: ACL, role, registration or attestation failures."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class FailedPrecondition(NoxError):
    """The request is well formed but the system is not in a state to serve it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class NotFound(NoxError):
    """A handle, task or node that does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(NoxError):
    """An object that exists already with a different value."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class ResourceExhausted(NoxError):
    """A size, rate or count limit was exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(NoxError):
    """A dependency (KMS quorum, chain, queue) cannot be reached right now; retrying may help."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
    retryable = True


class DeadlineExceeded(NoxError):
    """A lease or deadline ran out."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"
    retryable = True


_BY_CODE: dict[grpc.StatusCode, type[NoxError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        FailedPrecondition,
        NotFound,
        AlreadyExists,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
    )
}


def error_class_for(code: grpc.StatusCode) -> type[NoxError]:
    """The typed error class a client raises for a status code (NoxError when unmapped)."""
    return _BY_CODE.get(code, NoxError)
