"""Shamir t-of-n sharing of the KMS key over the secp256k1 group order, with Feldman commitments.

DESIGN §6. The dealer picks a random polynomial `f(z) = a_0 + a_1·z + … + a_{t-1}·z^{t-1}`
mod n with `a_0 = x` (the protocol key), gives node i the share `x_i = f(i)`, and publishes
`PK = x·G`, the public shares `PK_i = x_i·G` and the Feldman commitments `C_j = a_j·G`. Node i
checks `x_i·G == Σ_j C_j·i^j`. A requester who holds t verified partials `D_i = x_i·K`
rebuilds `S = x·K = Σ λ_i·D_i` with the Lagrange coefficients at 0; `x` itself is never
rebuilt.

Why scalars are hand-rolled: no well-kept library offers Shamir/Feldman/DLEQ over secp256k1
(PyPI has only small single-author packages over ad-hoc prime fields). The group operations
themselves are libsecp256k1 through coincurve (`PublicKey.multiply`, `combine_keys`,
`from_secret`); only the scalar arithmetic mod n, which Python's ints do exactly, is written
here. Python ints cannot be wiped from memory: see docs/kms.md for what that means for the
dealer.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKey

from nox.crypto.threshold_exceptions import (
    InvalidPoint,
    InvalidThresholdParameters,
    ShareCommitmentMismatch,
)

# Order of the secp256k1 group (SEC 2, §2.4.1).
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# The generator G, compressed.
G_BYTES = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")
POINT_SIZE = 33
SCALAR_SIZE = 32
# Share indices are small positive integers; this bound keeps files and proofs sane.
MAX_SHARES = 255

Rand = Callable[[int], bytes]


def scalar_to_bytes(value: int) -> bytes:
    """32-byte big-endian encoding of a scalar in [0, n)."""
    return value.to_bytes(SCALAR_SIZE, "big")


def random_scalar(rand: Rand = secrets.token_bytes) -> int:
    """A uniform scalar in [1, n) by rejection sampling 32-byte strings from `rand`."""
    while True:
        value = int.from_bytes(rand(SCALAR_SIZE), "big")
        if 0 < value < N:
            return value


def parse_point(data: bytes, what: str = "point") -> PublicKey:
    """Parse a 33-byte compressed point; raises InvalidPoint naming `what` (never the bytes)."""
    if len(data) != POINT_SIZE or data[0] not in (2, 3):
        raise InvalidPoint(f"{what} must be a 33-byte compressed secp256k1 point")
    try:
        return PublicKey(bytes(data))
    except ValueError:
        raise InvalidPoint(f"{what} is not on the secp256k1 curve") from None


def point_bytes(point: PublicKey) -> bytes:
    """Compressed 33-byte encoding."""
    data: bytes = point.format(compressed=True)
    return data


def mul(point: PublicKey, scalar: int) -> PublicKey:
    """`scalar·point` for a scalar in [1, n) (libsecp256k1's constant-time tweak_mul)."""
    if not 0 < scalar < N:
        raise InvalidThresholdParameters("scalar out of range [1, n)")
    result: PublicKey = point.multiply(scalar_to_bytes(scalar))
    return result


def mul_g(scalar: int) -> PublicKey:
    """`scalar·G` with libsecp256k1's precomputed generator tables."""
    if not 0 < scalar < N:
        raise InvalidThresholdParameters("scalar out of range [1, n)")
    result: PublicKey = PublicKey.from_valid_secret(scalar_to_bytes(scalar))
    return result


def add_points(points: Sequence[PublicKey]) -> PublicKey:
    """Sum of points; raises InvalidPoint when the sum is the point at infinity."""
    if len(points) == 1:
        return points[0]
    try:
        result: PublicKey = PublicKey.combine_keys(list(points))
    except ValueError:
        raise InvalidPoint("sum of points is the point at infinity") from None
    return result


@dataclass(frozen=True, repr=False)
class KeyShare:
    """Node `index`'s Shamir share `x_i = f(i)` of the protocol key. Never printable."""

    index: int
    value: int = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_SHARES:
            raise InvalidThresholdParameters(f"share index must be in [1, {MAX_SHARES}]")
        if not 0 < self.value < N:
            raise InvalidThresholdParameters(f"share {self.index} is out of range [1, n)")

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index}, value=<redacted>)"

    __str__ = __repr__

    def secret_bytes(self) -> bytes:
        """The share as 32 bytes, for sealing it at rest (explicit on purpose)."""
        return scalar_to_bytes(self.value)

    def public_share(self) -> bytes:
        """`PK_i = x_i·G`, compressed."""
        return point_bytes(mul_g(self.value))


def _check_parameters(threshold: int, shares: int) -> None:
    if not 1 <= threshold <= shares <= MAX_SHARES:
        raise InvalidThresholdParameters(
            f"need 1 <= threshold <= shares <= {MAX_SHARES}, got t={threshold}, n={shares}"
        )


def feldman_public_share(commitments: Sequence[PublicKey], index: int) -> PublicKey:
    """`Σ_j C_j·i^j`: what `x_i·G` must be for a share consistent with the commitments."""
    terms = [commitments[0]]
    power = 1
    for commitment in commitments[1:]:
        power = power * index % N
        terms.append(mul(commitment, power))
    return add_points(terms)


@dataclass(frozen=True)
class ThresholdPublicKey:
    """What is published on-chain: `PK`, `PK_1..PK_n` (index i at position i−1), `C_0..C_{t-1}`."""

    threshold: int
    public_key: bytes
    public_shares: tuple[bytes, ...]
    commitments: tuple[bytes, ...]
    epoch: int = 0

    @property
    def n(self) -> int:
        """Number of shares (KMS nodes)."""
        return len(self.public_shares)

    def public_share(self, index: int) -> bytes:
        """`PK_i` of node `index` (1-based)."""
        if not 1 <= index <= self.n:
            raise InvalidThresholdParameters(f"node index {index} is not in [1, {self.n}]")
        return self.public_shares[index - 1]

    def validate(self) -> None:
        """Check the set is consistent: `C_0 == PK` and every `PK_i == Σ C_j·i^j`. Raises."""
        _check_parameters(self.threshold, self.n)
        if len(self.commitments) != self.threshold:
            raise InvalidThresholdParameters(
                f"{len(self.commitments)} commitments for threshold {self.threshold}"
            )
        if not 0 <= self.epoch < 2**64:
            raise InvalidThresholdParameters("epoch must fit 64 bits")
        parse_point(self.public_key, "public key")
        commitments = [parse_point(c, f"commitment {j}") for j, c in enumerate(self.commitments)]
        if self.commitments[0] != self.public_key:
            raise InvalidThresholdParameters("commitment 0 is not the public key")
        for i, published in enumerate(self.public_shares, start=1):
            parse_point(published, f"public share {i}")
            if point_bytes(feldman_public_share(commitments, i)) != published:
                raise InvalidThresholdParameters(f"public share {i} does not match the commitments")

    def to_json(self) -> dict[str, Any]:
        """JSON form (hex with 0x) for public.json and on-chain publication."""
        return {
            "version": 1,
            "threshold": self.threshold,
            "n": self.n,
            "epoch": self.epoch,
            "public_key": "0x" + self.public_key.hex(),
            "public_shares": ["0x" + p.hex() for p in self.public_shares],
            "commitments": ["0x" + c.hex() for c in self.commitments],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThresholdPublicKey:
        """Strict inverse of `to_json`; validates the result. Raises InvalidThresholdParameters."""
        try:
            if data["version"] != 1:
                raise InvalidThresholdParameters(f"unknown public key version {data['version']!r}")
            public = cls(
                threshold=_int(data["threshold"], "threshold"),
                public_key=_hex(data["public_key"], "public_key"),
                public_shares=tuple(_hex(p, "public_shares") for p in data["public_shares"]),
                commitments=tuple(_hex(c, "commitments") for c in data["commitments"]),
                epoch=_int(data.get("epoch", 0), "epoch"),
            )
            if _int(data["n"], "n") != public.n:
                raise InvalidThresholdParameters("n does not match the number of public shares")
        except (KeyError, TypeError) as exc:
            raise InvalidThresholdParameters(f"malformed public key set: {exc!r}") from None
        public.validate()
        return public


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidThresholdParameters(f"{what} must be an integer")
    return value


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidThresholdParameters(f"{what} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidThresholdParameters(f"{what} is not valid hex") from None


@dataclass(frozen=True, repr=False)
class Dealing:
    """The dealer's output: every node's share and the public set. Never printable."""

    public: ThresholdPublicKey
    shares: tuple[KeyShare, ...]

    def __repr__(self) -> str:
        return f"Dealing(public={self.public!r}, shares=<{len(self.shares)} redacted>)"

    __str__ = __repr__


def deal(
    threshold: int,
    shares: int,
    *,
    rand: Rand = secrets.token_bytes,
    secret: int | None = None,
    epoch: int = 0,
) -> Dealing:
    """Split a fresh random key (or `secret`, for tests) t-of-n with Feldman commitments.

    The polynomial's coefficients and `x` are local to this call; the caller gets only the
    shares and the public set. Python cannot guarantee those ints are wiped: run the dealer
    in a short-lived process (see docs/kms.md).
    """
    _check_parameters(threshold, shares)
    if secret is not None and not 0 < secret < N:
        raise InvalidThresholdParameters("secret out of range [1, n)")
    while True:
        coefficients = [secret if secret is not None else random_scalar(rand)]
        coefficients += [random_scalar(rand) for _ in range(threshold - 1)]
        values = [_evaluate(coefficients, i) for i in range(1, shares + 1)]
        # A zero share has no public share (the point at infinity): draw again (prob. ~n/2^256).
        if all(values):
            break
    commitments = tuple(point_bytes(mul_g(a)) for a in coefficients)
    key_shares = tuple(KeyShare(i, v) for i, v in enumerate(values, start=1))
    public = ThresholdPublicKey(
        threshold=threshold,
        public_key=commitments[0],
        public_shares=tuple(s.public_share() for s in key_shares),
        commitments=commitments,
        epoch=epoch,
    )
    return Dealing(public=public, shares=key_shares)


def _evaluate(coefficients: Sequence[int], index: int) -> int:
    """f(index) mod n by Horner's rule."""
    value = 0
    for a in reversed(coefficients):
        value = (value * index + a) % N
    return value


def verify_share(share: KeyShare, public: ThresholdPublicKey) -> None:
    """Check `x_i·G == Σ C_j·i^j == PK_i`; raises ShareCommitmentMismatch (index only)."""
    if not 1 <= share.index <= public.n:
        raise ShareCommitmentMismatch(f"share index {share.index} is not in [1, {public.n}]")
    commitments = [parse_point(c, f"commitment {j}") for j, c in enumerate(public.commitments)]
    own = share.public_share()
    if own != point_bytes(feldman_public_share(commitments, share.index)):
        raise ShareCommitmentMismatch(f"share {share.index} does not match the commitments")
    if own != public.public_share(share.index):
        raise ShareCommitmentMismatch(f"share {share.index} does not match public share")


def lagrange_coefficients(indices: Iterable[int]) -> dict[int, int]:
    """λ_i = Π_{j≠i} j / (j − i) mod n, the Lagrange coefficients at 0 for these indices."""
    chosen = list(indices)
    if len(set(chosen)) != len(chosen) or any(not 0 < i < N for i in chosen):
        raise InvalidThresholdParameters("indices must be distinct and in [1, n)")
    coefficients: dict[int, int] = {}
    for i in chosen:
        numerator = 1
        denominator = 1
        for j in chosen:
            if j != i:
                numerator = numerator * j % N
                denominator = denominator * (j - i) % N
        coefficients[i] = numerator * pow(denominator, -1, N) % N
    return coefficients


def combine_points(partials: Mapping[int, bytes]) -> bytes:
    """`S = Σ λ_i·D_i` over exactly the given partials (index → compressed `D_i`).

    The caller must have verified each `D_i` (DLEQ) and pass exactly t of them; with fewer
    the result is a meaningless point, not an error this function can detect.
    """
    if not partials:
        raise InvalidThresholdParameters("no partials to combine")
    lambdas = lagrange_coefficients(partials)
    terms = [mul(parse_point(d, f"partial {i}"), lambdas[i]) for i, d in partials.items()]
    return point_bytes(add_points(terms))
