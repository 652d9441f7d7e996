"""Shamir t-of-n with Feldman commitments: reconstruction at any t, failure at t−1, checks."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from coincurve import PrivateKey, PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.crypto.threshold import (
    KeyShare,
    N,
    ThresholdPublicKey,
    combine_points,
    deal,
    lagrange_coefficients,
    scalar_to_bytes,
    verify_share,
)
from nox.crypto.threshold_exceptions import (
    InvalidPoint,
    InvalidThresholdParameters,
    ShareCommitmentMismatch,
)

scalars = st.integers(min_value=1, max_value=N - 1)


def undivided(secret: int, k_point: bytes) -> bytes:
    """x·K computed by libsecp256k1 with the whole key: the reference the shares must match."""
    return PublicKey(k_point).multiply(scalar_to_bytes(secret)).format()


def partial(share: KeyShare, k_point: bytes) -> bytes:
    return PublicKey(k_point).multiply(share.secret_bytes()).format()


@st.composite
def setups(draw: st.DrawFn) -> tuple[int, int, int, bytes, random.Random]:
    n = draw(st.integers(min_value=1, max_value=5))
    t = draw(st.integers(min_value=1, max_value=n))
    secret = draw(scalars)
    k_point = PrivateKey(scalar_to_bytes(draw(scalars))).public_key.format()
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    return t, n, secret, k_point, rng


@settings(max_examples=60, deadline=None)
@given(setups())
def test_every_t_subset_gives_the_undivided_shared_point(
    setup: tuple[int, int, int, bytes, random.Random],
) -> None:
    t, n, secret, k_point, rng = setup
    dealing = deal(t, n, secret=secret, rand=rng.randbytes)
    assert dealing.public.public_key == PrivateKey(scalar_to_bytes(secret)).public_key.format()
    expected = undivided(secret, k_point)
    partials = {s.index: partial(s, k_point) for s in dealing.shares}
    for subset in itertools.combinations(sorted(partials), t):
        assert combine_points({i: partials[i] for i in subset}) == expected


@settings(max_examples=60, deadline=None)
@given(setups())
def test_t_minus_one_partials_do_not_give_it(
    setup: tuple[int, int, int, bytes, random.Random],
) -> None:
    t, n, secret, k_point, rng = setup
    if t < 2:
        return  # with t = 1 a single share is the key: nothing below the threshold to test
    dealing = deal(t, n, secret=secret, rand=rng.randbytes)
    expected = undivided(secret, k_point)
    partials = {s.index: partial(s, k_point) for s in dealing.shares}
    for subset in itertools.combinations(sorted(partials), t - 1):
        assert combine_points({i: partials[i] for i in subset}) != expected


def test_lagrange_coefficients_interpolate_a_known_polynomial() -> None:
    # f(z) = 7 + 3z + 5z^2 mod n: any 3 points give f(0) = 7.
    f = {i: (7 + 3 * i + 5 * i * i) % N for i in range(1, 6)}
    for subset in itertools.combinations(f, 3):
        lambdas = lagrange_coefficients(subset)
        assert sum(lambdas[i] * f[i] for i in subset) % N == 7


def test_lagrange_rejects_duplicate_or_zero_indices() -> None:
    with pytest.raises(InvalidThresholdParameters):
        lagrange_coefficients([1, 1])
    with pytest.raises(InvalidThresholdParameters):
        lagrange_coefficients([0, 2])


def test_every_dealt_share_verifies_and_the_public_set_is_consistent() -> None:
    dealing = deal(3, 5)
    dealing.public.validate()
    assert len(dealing.public.commitments) == 3
    assert dealing.public.commitments[0] == dealing.public.public_key
    for share in dealing.shares:
        verify_share(share, dealing.public)
        assert dealing.public.public_share(share.index) == share.public_share()


def test_a_wrong_share_fails_the_feldman_check() -> None:
    dealing = deal(2, 3)
    share = dealing.shares[1]
    for wrong in (
        KeyShare(share.index, (share.value + 1) % N or 1),
        KeyShare(1, share.value),  # right value, wrong index
    ):
        with pytest.raises(ShareCommitmentMismatch) as info:
            verify_share(wrong, dealing.public)
        assert hex(share.value)[2:] not in str(info.value)


def test_a_share_consistent_with_commitments_but_not_the_published_share_is_refused() -> None:
    dealing = deal(2, 3)
    other = deal(2, 3)
    # Commitments of one dealing, public shares of another: validate() and verify_share refuse.
    mixed = dataclasses.replace(dealing.public, public_shares=other.public.public_shares)
    with pytest.raises(InvalidThresholdParameters):
        mixed.validate()
    with pytest.raises(ShareCommitmentMismatch):
        verify_share(dealing.shares[0], mixed)


def test_public_set_validation_rejects_inconsistencies() -> None:
    public = deal(2, 3).public
    other = deal(2, 3).public
    cases = [
        dataclasses.replace(public, public_key=other.public_key),
        dataclasses.replace(public, commitments=public.commitments[:1]),
        dataclasses.replace(public, commitments=(public.commitments[0], other.commitments[1])),
        dataclasses.replace(public, threshold=4),
    ]
    for case in cases:
        with pytest.raises(InvalidThresholdParameters):
            case.validate()
    with pytest.raises(InvalidPoint):
        dataclasses.replace(public, public_key=b"\x02" + b"\xff" * 32).validate()


def test_public_set_json_round_trip_and_strictness() -> None:
    public = deal(3, 4, epoch=7).public
    data = public.to_json()
    assert ThresholdPublicKey.from_json(data) == public
    for key in ("threshold", "public_key", "n"):
        broken = dict(data)
        del broken[key]
        with pytest.raises(InvalidThresholdParameters):
            ThresholdPublicKey.from_json(broken)
    with pytest.raises(InvalidThresholdParameters):
        ThresholdPublicKey.from_json(data | {"n": 5})
    with pytest.raises(InvalidThresholdParameters):
        ThresholdPublicKey.from_json(data | {"public_key": data["public_key"][2:]})


@pytest.mark.parametrize(("t", "n"), [(0, 3), (4, 3), (1, 0), (2, 256)])
def test_deal_rejects_bad_parameters(t: int, n: int) -> None:
    with pytest.raises(InvalidThresholdParameters):
        deal(t, n)


def test_deal_uses_the_injected_randomness() -> None:
    a = deal(2, 3, rand=random.Random(1).randbytes)
    b = deal(2, 3, rand=random.Random(1).randbytes)
    c = deal(2, 3, rand=random.Random(2).randbytes)
    assert a.public == b.public
    assert a.public != c.public


def test_shares_never_print() -> None:
    dealing = deal(2, 3)
    for share in dealing.shares:
        secret_hex = share.secret_bytes().hex()
        for text in (repr(share), str(share), repr(dealing), str(dealing), f"{share}"):
            assert secret_hex not in text
            assert str(share.value) not in text
            assert "redacted" in text
