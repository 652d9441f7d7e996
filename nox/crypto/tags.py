"""Keyed value tags (issue 14: tags only enclaves can compute; docs/kms.md, "Tag key").

A value tag lets redundant runners and an idempotent re-publication compare results
without revealing them. Unkeyed (`keccak256(handle ‖ plaintext)`, DESIGN §5 before issue 14)
it let whoever reads the gateway's database test guesses: a bool in one hash, a balance by
a short search. Here the tag is a PRF under a secret only attested enclaves hold:

    tag = HMAC-SHA256(tag_key, handle ‖ plaintext)

HMAC-SHA256 rather than keccak256(key ‖ ...): both are PRFs for a fixed-size key (keccak
has no length extension), but HMAC is the standard construction with a proof under the
usual assumptions, it comes with Python, and its outputs can never collide with one of the
many public keccak256 identifiers (handles, message ids) the protocol computes.

The tag key comes from the threshold KMS, so no single party holds it:

    P_tag   = hash-to-curve("NOX:VALUE-TAG:POINT:v1" ‖ chainId (32 bytes) ‖ NoxRegistry)
    S       = x·P_tag               (x the KMS protocol key; t partials x_i·P_tag combined)
    tag_key = HKDF-SHA256(IKM = S (33 bytes compressed), salt = P_tag,
                          info = "NOX:VALUE-TAG:KEY:v1", 32 bytes)

`P_tag` is found by try-and-increment over keccak256, so nobody knows its discrete
logarithm: were `P_tag = k·G` for a known k, `x·P_tag = k·PK` would follow from the public
key. The search branches on public data only, so its timing reveals nothing. The key
depends on x, not on the epoch: a re-sharing of the same x keeps every tag; a new x makes
new tags (docs/kms.md says what that means for stored tags).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from coincurve import PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nox.crypto.eip712 import Domain
from nox.crypto.hashing import keccak256
from nox.crypto.threshold import parse_point, point_bytes
from nox.errors import InvalidArgument

__all__ = [
    "TAG_KEY_HANDLE",
    "TAG_SIZE",
    "TagKey",
    "tag_key_from_point",
    "tag_point",
]

TAG_SIZE = 32
HANDLE_SIZE = 32
POINT_DST = b"NOX:VALUE-TAG:POINT:v1"
KEY_INFO = b"NOX:VALUE-TAG:KEY:v1"
TAG_KEY_HANDLE = bytes(HANDLE_SIZE)
"""The `DelegationTarget.handle` of a tag-key request: all zeros (chain id 0), never a
value's handle. The KMS checks the point, not this; it only fills the field."""


@functools.lru_cache(maxsize=8)
def tag_point(domain: Domain) -> bytes:
    """P_tag of a deployment (33-byte compressed point; see the module docstring)."""
    seed = POINT_DST + domain.chain_id.to_bytes(32, "big") + bytes(domain.verifying_contract)
    for counter in range(256):
        x = keccak256(seed, bytes([counter]))
        try:
            return point_bytes(PublicKey(b"\x02" + x))
        except ValueError:  # x ≥ p or x³+7 not a square: about half the candidates
            continue
    raise InvalidArgument("no curve point found for the tag domain")  # probability 2**-256


class TagKey:
    """The value-tag key of a deployment. Held in memory only: never logged, stored or sent
    (its repr hides it)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidArgument("a tag key is 32 bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "TagKey(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(b"TagKey" + self._key).digest())

    def tag(self, handle: bytes, plaintext: bytes) -> bytes:
        """HMAC-SHA256(tag_key, handle ‖ plaintext): equal tags mean equal values under the
        same handle; without the key a tag says nothing about the value."""
        if len(handle) != HANDLE_SIZE:
            raise InvalidArgument(f"a handle is {HANDLE_SIZE} bytes")
        return hmac.new(self._key, bytes(handle) + bytes(plaintext), hashlib.sha256).digest()


def tag_key_from_point(shared_point: bytes, domain: Domain) -> TagKey:
    """The tag key from S = x·P_tag (combined from t KMS partials, or computed by a test
    that dealt the shares)."""
    point = point_bytes(parse_point(shared_point, "tag-key point"))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=tag_point(domain), info=KEY_INFO)
    return TagKey(hkdf.derive(point))
