"""The value-tag key for tests that deal the KMS shares themselves (docs/kms.md, "Tag key").

Production combines t KMS partials `x_i·P_tag` it received; a test holds the shares, so it
computes the same partials and combines them with the same code, then derives the key with
`nox.crypto.tags.tag_key_from_point`, as the gateway and runners do.
"""

from __future__ import annotations

from collections.abc import Sequence

from nox.crypto.eip712 import Domain
from nox.crypto.tags import TagKey, tag_key_from_point, tag_point
from nox.crypto.threshold import Dealing, KeyShare, combine_points, mul, parse_point, point_bytes


def tag_key_from_shares(shares: Sequence[KeyShare], domain: Domain) -> TagKey:
    """The tag key from t (or more: the first t are not chosen, all are combined) shares."""
    p_tag = parse_point(tag_point(domain))
    partials = {s.index: point_bytes(mul(p_tag, s.value)) for s in shares}
    return tag_key_from_point(combine_points(partials), domain)


def tag_key_of(dealing: Dealing, domain: Domain) -> TagKey:
    """The tag key of a dealing's protocol key (combines the first t shares)."""
    return tag_key_from_shares(dealing.shares[: dealing.public.threshold], domain)


def tag_key_from_secret(secret: int, domain: Domain) -> TagKey:
    """The tag key from the protocol key x itself (x·P_tag)."""
    return tag_key_from_point(point_bytes(mul(parse_point(tag_point(domain)), secret)), domain)
