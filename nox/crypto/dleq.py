"""Chaum-Pedersen proof that `log_G(PK_i) = log_K(D_i)`, non-interactive by Fiat-Shamir.

DESIGN §6: a KMS node proves its partial `D_i = x_i·K` was made with the share behind its
published `PK_i = x_i·G`, without revealing `x_i`.

Prover: random r, `A1 = r·G`, `A2 = r·K`, `c = H(G, PK_i, K, D_i, A1, A2, context) mod n`,
`z = r + c·x_i mod n`; the proof is `(c, z)`, 64 bytes. Verifier: `A1 = z·G − c·PK_i`,
`A2 = z·K − c·D_i`, accept iff `H(…, A1, A2, context) == c`. The compact (c, z) form costs the
same four multiplications as the (A1, A2, z) form and is half the size.

H is SHA-256 over a length-prefixed domain tag and fixed-width fields (33-byte compressed
points, then a length-prefixed context), so no two distinct inputs share an encoding. The
context binds the proof to one request (epoch, request id; see `nox.crypto.delegation`),
so a proof cannot be replayed for another request. The 256-bit digest is reduced mod n; the
bias is below 2^-127 because n > 2^256 − 2^129.

Hand-rolled for the reason given in `nox.crypto.threshold`; the group operations are
libsecp256k1's through coincurve.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from nox.crypto.threshold import (
    G_BYTES,
    SCALAR_SIZE,
    N,
    Rand,
    add_points,
    mul,
    mul_g,
    parse_point,
    point_bytes,
    random_scalar,
    scalar_to_bytes,
)
from nox.crypto.threshold_exceptions import DleqProofInvalid, InvalidPoint

DOMAIN_TAG = b"NOX:KMS:DLEQ:v1"
PROOF_SIZE = 2 * SCALAR_SIZE
MAX_CONTEXT = 1024


@dataclass(frozen=True)
class DleqProof:
    """A Chaum-Pedersen proof `(c, z)`; both scalars in [1, n). Public data."""

    challenge: int
    response: int

    def to_bytes(self) -> bytes:
        """`c ‖ z`, 64 bytes big-endian."""
        return scalar_to_bytes(self.challenge) + scalar_to_bytes(self.response)

    @classmethod
    def from_bytes(cls, data: bytes) -> DleqProof:
        """Strict parse of `c ‖ z`; raises DleqProofInvalid on a wrong length or range."""
        if len(data) != PROOF_SIZE:
            raise DleqProofInvalid(f"DLEQ proof must be {PROOF_SIZE} bytes, got {len(data)}")
        challenge = int.from_bytes(data[:SCALAR_SIZE], "big")
        response = int.from_bytes(data[SCALAR_SIZE:], "big")
        if not (0 < challenge < N and 0 < response < N):
            raise DleqProofInvalid("DLEQ proof scalars out of range [1, n)")
        return cls(challenge, response)


def _challenge(
    public: bytes, base: bytes, result: bytes, a1: bytes, a2: bytes, context: bytes
) -> int:
    digest = hashlib.sha256(
        len(DOMAIN_TAG).to_bytes(1, "big")
        + DOMAIN_TAG
        + G_BYTES
        + public
        + base
        + result
        + a1
        + a2
        + len(context).to_bytes(4, "big")
        + context
    ).digest()
    return int.from_bytes(digest, "big") % N


def _check_context(context: bytes) -> None:
    if len(context) > MAX_CONTEXT:
        raise DleqProofInvalid(f"DLEQ context longer than {MAX_CONTEXT} bytes")


def prove_dleq(
    secret: int,
    base: bytes,
    *,
    context: bytes,
    public: bytes | None = None,
    rand: Rand = secrets.token_bytes,
) -> tuple[bytes, DleqProof]:
    """Compute `D = secret·base` and a proof that `log_G(secret·G) = log_base(D)`.

    `public` (= secret·G) may be passed when the caller has it, saving one multiplication;
    it is not checked against `secret` here (a wrong one just yields a proof that fails).
    Returns `(D, proof)`.
    """
    _check_context(context)
    base_point = parse_point(base, "base point K")
    if public is None:
        public = point_bytes(mul_g(secret))
    result = point_bytes(mul(base_point, secret))
    while True:
        r = random_scalar(rand)
        a1 = point_bytes(mul_g(r))
        a2 = point_bytes(mul(base_point, r))
        c = _challenge(public, base, result, a1, a2, context)
        z = (r + c * secret) % N
        if c and z:  # zero happens with probability ~2^-256; draw again rather than emit it
            return result, DleqProof(c, z)


def verify_dleq(
    public: bytes, base: bytes, result: bytes, proof: DleqProof, *, context: bytes
) -> None:
    """Check that `log_G(public) = log_base(result)` under `context`. Raises DleqProofInvalid.

    Every input is untrusted: malformed points or scalars are rejected with the same error.
    """
    _check_context(context)
    if not (0 < proof.challenge < N and 0 < proof.response < N):
        raise DleqProofInvalid("DLEQ proof scalars out of range [1, n)")
    try:
        public_point = parse_point(public, "public share")
        base_point = parse_point(base, "base point K")
        result_point = parse_point(result, "partial")
    except InvalidPoint as exc:
        raise DleqProofInvalid(f"DLEQ statement malformed: {exc.message}") from None
    neg_c = N - proof.challenge
    try:
        a1 = add_points([mul_g(proof.response), mul(public_point, neg_c)])
        a2 = add_points([mul(base_point, proof.response), mul(result_point, neg_c)])
    except InvalidPoint:
        # A commitment at infinity never comes from an honest prover (r ≠ 0).
        raise DleqProofInvalid("DLEQ proof does not verify") from None
    expected = _challenge(public, base, result, point_bytes(a1), point_bytes(a2), context)
    if expected != proof.challenge:
        raise DleqProofInvalid("DLEQ proof does not verify")
