"""Chaum-Pedersen DLEQ: honest proofs verify; every single-field tamper is rejected, typed."""

from __future__ import annotations

import random

import pytest
from coincurve import PrivateKey, PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.crypto.dleq import PROOF_SIZE, DleqProof, prove_dleq, verify_dleq
from nox.crypto.threshold import N, scalar_to_bytes
from nox.crypto.threshold_exceptions import DleqProofInvalid
from nox.errors import InvalidArgument

scalars = st.integers(min_value=1, max_value=N - 1)


def point(scalar: int) -> bytes:
    return PrivateKey(scalar_to_bytes(scalar)).public_key.format()


def statement(secret: int, k_scalar: int, context: bytes) -> tuple[bytes, bytes, bytes, DleqProof]:
    public = point(secret)
    base = point(k_scalar)
    result, proof = prove_dleq(secret, base, context=context)
    return public, base, result, proof


@settings(max_examples=50, deadline=None)
@given(scalars, scalars, st.binary(max_size=64))
def test_honest_proofs_verify_and_result_is_secret_times_base(
    secret: int, k_scalar: int, context: bytes
) -> None:
    public, base, result, proof = statement(secret, k_scalar, context)
    assert result == PublicKey(base).multiply(scalar_to_bytes(secret)).format()
    verify_dleq(public, base, result, proof, context=context)
    assert DleqProof.from_bytes(proof.to_bytes()) == proof


def test_public_share_passed_in_gives_the_same_statement() -> None:
    """Passing secret·G saves a multiplication and changes nothing else: with the same
    nonce the proof is byte for byte the one computed without it; a wrong one fails."""
    secret = 0xC0FFEE
    base = point(99)

    def nonce(n: int) -> bytes:
        return (7).to_bytes(n, "big")

    computed = prove_dleq(secret, base, context=b"c", rand=nonce)
    passed = prove_dleq(secret, base, context=b"c", public=point(secret), rand=nonce)
    assert passed == computed
    verify_dleq(point(secret), base, *passed, context=b"c")
    result, wrong = prove_dleq(secret, base, context=b"c", public=point(secret + 1), rand=nonce)
    assert wrong != computed[1]
    with pytest.raises(DleqProofInvalid):
        verify_dleq(point(secret), base, result, wrong, context=b"c")


def _other_point(rng: random.Random) -> bytes:
    return point(rng.randrange(1, N))


@settings(max_examples=30, deadline=None)
@given(scalars, scalars, st.integers(min_value=0, max_value=2**32))
def test_every_single_field_tamper_is_rejected(secret: int, k_scalar: int, seed: int) -> None:
    rng = random.Random(seed)
    context = b"epoch0|request-1"
    public, base, result, proof = statement(secret, k_scalar, context)
    other = _other_point(rng)
    delta = rng.randrange(1, N)
    tampered = {
        "public share": (other, base, result, proof, context),
        "base K": (public, other, result, proof, context),
        "result D": (public, base, other, proof, context),
        "challenge c": (
            public,
            base,
            result,
            DleqProof((proof.challenge + delta) % N or 1, proof.response),
            context,
        ),
        "response z": (
            public,
            base,
            result,
            DleqProof(proof.challenge, (proof.response + delta) % N or 1),
            context,
        ),
        "context": (public, base, result, proof, context + b"x"),
        "swapped statement": (base, public, result, proof, context),
    }
    for name, (p, b, r, pr, ctx) in tampered.items():
        if (p, b, r, pr, ctx) == (public, base, result, proof, context):
            continue  # delta landed on the identity (never in practice)
        try:
            verify_dleq(p, b, r, pr, context=ctx)
        except DleqProofInvalid:
            continue
        pytest.fail(f"tampered {name} accepted")


def test_a_partial_made_with_another_secret_is_rejected_even_with_a_valid_proof_for_it() -> None:
    # The node proves honestly about a secret that is not its published share's.
    base = point(5)
    result, proof = prove_dleq(1234, base, context=b"")
    with pytest.raises(DleqProofInvalid):
        verify_dleq(point(4321), base, result, proof, context=b"")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01" * (PROOF_SIZE - 1),
        b"\x01" * (PROOF_SIZE + 1),
        bytes(32) + b"\x01" * 32,  # c = 0
        b"\x01" * 32 + bytes(32),  # z = 0
        scalar_to_bytes(1) + N.to_bytes(32, "big"),  # z = n
        b"\xff" * PROOF_SIZE,
    ],
)
def test_proof_encoding_is_strict(data: bytes) -> None:
    with pytest.raises(DleqProofInvalid):
        DleqProof.from_bytes(data)


def test_malformed_statement_points_are_typed_errors() -> None:
    public, base, result, proof = statement(77, 88, b"")
    bad_points = [b"", b"\x04" + bytes(64), b"\x02" + b"\xff" * 32, result[:-1]]
    for bad in bad_points:
        for args in ((bad, base, result), (public, bad, result), (public, base, bad)):
            with pytest.raises(DleqProofInvalid) as info:
                verify_dleq(*args, proof, context=b"")
            assert isinstance(info.value, InvalidArgument)


def test_out_of_range_proof_object_is_rejected() -> None:
    public, base, result, proof = statement(77, 88, b"")
    for bad in (DleqProof(0, proof.response), DleqProof(proof.challenge, N)):
        with pytest.raises(DleqProofInvalid):
            verify_dleq(public, base, result, bad, context=b"")


def test_error_messages_carry_no_secret() -> None:
    secret = 0x1111222233334444555566667777888899990000AAAABBBBCCCCDDDDEEEEFFFF
    public, base, result, proof = statement(secret, 3, b"")
    with pytest.raises(DleqProofInvalid) as info:
        verify_dleq(public, base, point(9), proof, context=b"")
    text = f"{info.value} {info.value!r} {info.value.metadata}"
    assert format(secret, "x") not in text
    assert result.hex() not in text
