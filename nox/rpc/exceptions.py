"""Errors of the gRPC plumbing itself (configuration and programming mistakes)."""

from __future__ import annotations

from nox.errors import (
    InvalidArgument,
    NotFound,
    NoxError,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)


class DuplicateErrorReason(NoxError):
    """Two different error classes were registered for the same wire reason."""

    reason = "DUPLICATE_ERROR_REASON"


class InvalidServerSettings(InvalidArgument):
    """Server or channel settings that cannot work (half a TLS pair, a negative size)."""

    reason = "INVALID_SERVER_SETTINGS"


class UnknownService(NotFound):
    """A health status was set for a service the server does not serve."""

    reason = "UNKNOWN_SERVICE"


class PortUnavailable(Unavailable):
    """The gRPC or metrics address cannot be bound (in use, or not a local address)."""

    reason = "PORT_UNAVAILABLE"


class RequestTooLarge(ResourceExhausted):
    """A request larger than its method's size limit, refused before it is parsed."""

    reason = "REQUEST_TOO_LARGE"


class TlsBindingInvalid(PermissionDenied):
    """A server's TLS certificate is not bound to an active enclave of the expected role
    (RA-TLS, `nox.rpc.ratls`); refused before any request is sent. Metadata `check` names
    the failed check: handshake, format, signature, endpoint, address, directory, validity."""

    reason = "TLS_BINDING_INVALID"
