"""Typed errors of the KMS package (share files, key-encryption keys, start-up checks).

Messages name files, fields and node indices, never a share, a KEK or a passphrase.
"""

from __future__ import annotations

from nox.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from nox.protocol import exceptions as _shared

# Shared with other services: each reason is declared once, in nox.protocol.exceptions.
BatchTooLarge = _shared.BatchTooLarge
LeaseExpired = _shared.LeaseExpired
NodeNotReady = _shared.NodeNotReady

# The KMS's names for the shared LEASE_EXPIRED and BATCH_TOO_LARGE errors.
AssignmentLeaseExpired = LeaseExpired
DelegationBatchTooLarge = BatchTooLarge


class ShareFileMalformed(InvalidArgument):
    """A share or public-key file that is not the JSON this version writes."""

    reason = "SHARE_FILE_MALFORMED"


class InvalidKek(InvalidArgument):
    """A key-encryption key that is malformed (a key file not 32 bytes, an empty passphrase)."""

    reason = "INVALID_KEK"


class ShareUnsealFailed(FailedPrecondition):
    """The sealed share does not open: wrong KEK, or the file was tampered with."""

    reason = "SHARE_UNSEAL_FAILED"


class PublicKeyMismatch(FailedPrecondition):
    """The share file's public key set differs from the published one: refuse to serve."""

    reason = "KMS_PUBLIC_KEY_MISMATCH"


# --- KmsService.Delegate (authorization and request checks; nox/kms/authz.py, node.py).


class DelegationNotAuthorized(PermissionDenied):
    """A delegation whose authorization does not cover it (no covering assignment, none at all)."""

    reason = "DELEGATION_NOT_AUTHORIZED"


class TagKeyTargetInvalid(PermissionDenied):
    """A tag-key request for a point other than P_tag, or another authorization naming P_tag."""

    reason = "TAG_KEY_TARGET_INVALID"


class HandleNotInAssignment(PermissionDenied):
    """A target handle that is not an input of the runner's signed task assignment."""

    reason = "HANDLE_NOT_IN_ASSIGNMENT"


class NotPubliclyDecryptable(PermissionDenied):
    """A public decryption of a handle the on-chain ACL does not mark publicly decryptable."""

    reason = "NOT_PUBLICLY_DECRYPTABLE"


class KeyEpochMismatch(FailedPrecondition):
    """A request for another key epoch than the one this node's share belongs to."""
