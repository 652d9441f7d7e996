"""Typed errors of keys, envelopes, replay caches and ECIES (DESIGN §4, §5, §9).

Each class has a stable reason; the gRPC code comes from its `nox.errors` base. Messages name
the field that failed and never carry a key, a plaintext or a shared secret. The threshold
and DLEQ errors live apart in `threshold_exceptions`.
"""

from __future__ import annotations

from nox.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

__all__ = [
    "BadSignature",
    "DecryptionFailed",
    "EnvelopeExpired",
    "EnvelopeMalformed",
    "EnvelopeNotYetValid",
    "EnvelopeTooLarge",
    "EnvelopeWindowInvalid",
    "InvalidKey",
    "NotYetValid",
    "PayloadTypeMismatch",
    "ReplayCacheFull",
    "ReplayedNonce",
    "SealedInputInvalid",
    "SignatureMalformed",
    "UnexpectedSigner",
    "WrongAudience",
]


class InvalidKey(InvalidArgument):
    """A secret scalar or public key that is not a valid secp256k1 key of the right length."""

    reason = "INVALID_KEY"


class EnvelopeMalformed(InvalidArgument):
    """An envelope field of the wrong length, or a payload that does not parse."""

    reason = "ENVELOPE_MALFORMED"


class EnvelopeWindowInvalid(InvalidArgument):
    """An envelope whose expiry precedes its issue time or whose validity exceeds max_ttl."""

    reason = "ENVELOPE_WINDOW_INVALID"


class PayloadTypeMismatch(InvalidArgument):
    """The envelope's payload_type is not the message type the receiver expects."""

    reason = "PAYLOAD_TYPE_MISMATCH"


class BadSignature(Unauthenticated):
    """A signature that does not recover to a public key for the digest."""

    reason = "BAD_SIGNATURE"


class SignatureMalformed(BadSignature):
    """A signature of the wrong length, with v not 27/28, or with a high s (EIP-2)."""

    reason = "SIGNATURE_MALFORMED"


class UnexpectedSigner(BadSignature):
    """The signature recovers to an address other than the one the receiver expects.

    With ecrecover any change to the signed fields (a tampered payload) recovers some other
    address rather than failing, so this, or the registry check, is what catches it.
    """

    reason = "UNEXPECTED_SIGNER"


class WrongAudience(PermissionDenied):
    """The envelope is addressed to another receiver."""

    reason = "WRONG_AUDIENCE"


class EnvelopeExpired(Unauthenticated):
    """The envelope's expires_at is in the past."""

    reason = "ENVELOPE_EXPIRED"


class EnvelopeNotYetValid(Unauthenticated):
    """The envelope's issued_at is further in the future than the allowed clock skew."""

    reason = "ENVELOPE_NOT_YET_VALID"


NotYetValid = EnvelopeNotYetValid


class ReplayedNonce(Unauthenticated):
    """The (signer, nonce) pair was accepted before within its validity window."""

    reason = "NONCE_REPLAYED"


class EnvelopeTooLarge(ResourceExhausted):
    """The serialized envelope exceeds the receiver's size limit."""

    reason = "ENVELOPE_TOO_LARGE"


class ReplayCacheFull(ResourceExhausted):
    """The in-memory seen-nonce set is full of unexpired entries; nothing is forgotten early."""

    reason = "REPLAY_CACHE_FULL"


class DecryptionFailed(FailedPrecondition):
    """An ECIES ciphertext that does not authenticate under this key and handle."""

    reason = "DECRYPTION_FAILED"


class SealedInputInvalid(InvalidArgument):
    """A sealed input (nox.crypto.sealing) that does not open under the gateway's enclave key
    for its request's chain, type, owner and application: altered, or re-targeted."""

    reason = "SEALED_INPUT_INVALID"
