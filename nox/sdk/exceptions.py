"""Typed errors the SDK raises for answers it cannot accept (server errors arrive typed too).

Errors from the network are rebuilt by `nox.rpc.client` into the server's own classes
(`AclDenied`, `HandleNotFound`, ...). The classes here are the client's own checks; they
declare no reason of their own, so they travel under their base class's generic reason.
Where a specific reason already exists the SDK raises its class directly:
`nox.crypto.exceptions.UnexpectedSigner` for a proof not signed by the gateway,
`nox.kms.exceptions.PublicKeyMismatch` for a KMS key that differs from the trusted one, and
`nox.crypto.threshold_exceptions.QuorumNotReached` (which lists the bad nodes).
"""

from __future__ import annotations

from nox.errors import DeadlineExceeded, InvalidArgument, PermissionDenied


class KeyfileInvalid(InvalidArgument):
    """A key file that is not an encrypted keystore, or a passphrase that does not open it."""


class ResponseInvalid(InvalidArgument):
    """A gateway answer that does not match its request (handles, sizes, counts)."""


class ResultTimeout(DeadlineExceeded):
    """A handle was still not stored when `wait_for_result`'s timeout ran out."""


class GatewayKeyInvalid(PermissionDenied):
    """A gateway whose announced enclave public key is not the key of its enclave address:
    no input is sealed to it (the registry check of the address raises the registry's own
    error)."""
