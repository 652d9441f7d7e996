"""Typed errors of the threshold key, DLEQ proofs and decryption delegation.

Kept apart from `nox.crypto.exceptions` (the envelope and ECIES errors) so the two can be
written independently; both derive from `nox.errors`. No message here ever carries a share,
a secret scalar or a decrypted partial: only node indices, counts and field names.
"""

from __future__ import annotations

from collections.abc import Sequence

from nox.errors import FailedPrecondition, InvalidArgument, Unavailable


class InvalidPoint(InvalidArgument):
    """Bytes that are not a valid compressed secp256k1 point (33 bytes, on the curve)."""

    reason = "INVALID_POINT"


class InvalidThresholdParameters(InvalidArgument):
    """A threshold, share count, node index or public-key set that is inconsistent."""

    reason = "INVALID_THRESHOLD_PARAMETERS"


class InvalidRequesterKey(InvalidArgument):
    """A requester key that is malformed, of an unknown kind or too weak (RSA under 2048 bits)."""

    reason = "INVALID_REQUESTER_KEY"


class DleqProofInvalid(InvalidArgument):
    """A Chaum-Pedersen proof that does not verify, or is malformed."""

    reason = "DLEQ_PROOF_INVALID"


class ShareCommitmentMismatch(FailedPrecondition):
    """A key share that does not match the Feldman commitments or the published public share."""

    reason = "SHARE_COMMITMENT_MISMATCH"


class InvalidPartial(InvalidArgument):
    """A KMS node's partial decryption that fails its proof or cannot be opened; names the node."""

    reason = "KMS_PARTIAL_INVALID"

    def __init__(self, node_index: int, why: str) -> None:
        super().__init__(
            f"partial from KMS node {node_index} rejected: {why}",
            metadata={"node_index": str(node_index), "why": why},
        )
        self.node_index = node_index
        self.why = why


class QuorumNotReached(Unavailable):
    """Fewer than t valid partials: the shared point cannot be rebuilt. Lists the bad nodes."""

    reason = "KMS_QUORUM_NOT_REACHED"

    def __init__(self, threshold: int, valid: int, bad_nodes: Sequence[int]) -> None:
        bad = ",".join(str(i) for i in bad_nodes)
        super().__init__(
            f"{valid} valid partials, {threshold} needed; bad nodes: [{bad}]",
            metadata={"threshold": str(threshold), "valid": str(valid), "bad_nodes": bad},
        )
        self.threshold = threshold
        self.valid = valid
        self.bad_nodes = tuple(bad_nodes)
