"""keccak256, enclave keys, signatures and addresses, checked against eth_hash / eth_account."""

from __future__ import annotations

import copy
import pickle

import grpc
import pytest
from eth_account import Account
from eth_hash.backends.pycryptodome import keccak256 as reference_keccak
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.crypto.exceptions import BadSignature, InvalidKey, SignatureMalformed
from nox.crypto.hashing import keccak256
from nox.crypto.keys import (
    SECP256K1_ORDER,
    EnclaveKey,
    address_from_public_key,
    checksum,
    recover_address,
)
from nox.errors import InvalidArgument

secrets32 = st.integers(min_value=1, max_value=SECP256K1_ORDER - 1).map(
    lambda i: i.to_bytes(32, "big")
)


@settings(max_examples=200)
@given(parts=st.lists(st.binary(max_size=300), max_size=5))
def test_keccak256_matches_eth_hash(parts: list[bytes]) -> None:
    assert keccak256(*parts) == reference_keccak(b"".join(parts))


def test_keccak256_known_empty() -> None:
    # keccak256("") as quoted in the Ethereum yellow paper (not SHA3-256's a7ffc6f8...).
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


@settings(max_examples=50)
@given(secret=secrets32, digest=st.binary(min_size=32, max_size=32))
def test_sign_and_address_match_eth_account(secret: bytes, digest: bytes) -> None:
    key = EnclaveKey.from_bytes(secret)
    reference = Account.from_key(secret)
    assert key.address == bytes.fromhex(reference.address[2:])
    signature = key.sign_digest(digest)
    # Both sign deterministically (RFC 6979) and normalize to low s: identical bytes.
    assert signature == bytes(Account.unsafe_sign_hash(digest, secret).signature)
    assert signature[64] in (27, 28)
    assert recover_address(digest, signature) == key.address
    assert Account._recover_hash(digest, signature=signature) == reference.address
    assert address_from_public_key(key.public_key) == key.address


def test_secret_never_printed(signer_key: EnclaveKey) -> None:
    secret_hex = signer_key.secret_bytes().hex()
    shown = [repr(signer_key), str(signer_key), f"{signer_key}", f"{signer_key!r}"]
    for text in shown:
        assert secret_hex not in text.lower()
        assert secret_hex[:16] not in text.lower()
    assert checksum(signer_key.address) in repr(signer_key)


def test_key_cannot_be_pickled_or_copied_silently(signer_key: EnclaveKey) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer_key)
    with pytest.raises(TypeError, match="cannot be pickled"):
        copy.deepcopy(signer_key)


def test_secret_round_trip(signer_key: EnclaveKey) -> None:
    again = EnclaveKey.from_bytes(signer_key.secret_bytes())
    assert again.address == signer_key.address
    assert again.public_key == signer_key.public_key
    assert len(signer_key.public_key) == 33


@pytest.mark.parametrize(
    "secret",
    [bytes(32), SECP256K1_ORDER.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31, b"\x01" * 33],
    ids=["zero", "order", "above-order", "short", "long"],
)
def test_invalid_secret_rejected(secret: bytes) -> None:
    with pytest.raises(InvalidKey) as err:
        EnclaveKey.from_bytes(secret)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert secret.hex() not in str(err.value)


def test_generate_uses_injected_randomness() -> None:
    draws = iter([bytes(32), b"\xff" * 32, b"\x22" * 32])  # two invalid scalars, then a valid one
    key = EnclaveKey.generate(lambda n: next(draws))
    assert key.secret_bytes() == b"\x22" * 32


def test_signature_wrong_length(signer_key: EnclaveKey) -> None:
    digest = keccak256(b"m")
    sig = signer_key.sign_digest(digest)
    for bad in (sig[:64], sig + b"\x00", b""):
        with pytest.raises(SignatureMalformed) as err:
            recover_address(digest, bad)
        assert err.value.reason == "SIGNATURE_MALFORMED"
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("v", [0, 1, 2, 26, 29, 35, 255])
def test_signature_invalid_recovery_id(signer_key: EnclaveKey, v: int) -> None:
    """Only v = 27/28 is accepted: 0/1 (the raw recovery id) is refused so that each
    signature has exactly one byte encoding."""
    digest = keccak256(b"m")
    sig = signer_key.sign_digest(digest)
    with pytest.raises(SignatureMalformed, match="recovery id"):
        recover_address(digest, sig[:64] + bytes((v,)))


def test_high_s_rejected(signer_key: EnclaveKey) -> None:
    digest = keccak256(b"m")
    sig = signer_key.sign_digest(digest)
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big") + bytes((55 - sig[64],))
    # The malleated twin is mathematically valid (eth_account recovers the same signer) ...
    assert Account._recover_hash(
        digest, vrs=(flipped[64], int.from_bytes(flipped[:32], "big"), SECP256K1_ORDER - s)
    ) == checksum(signer_key.address)
    # ... but not canonical, so it is refused (EIP-2).
    with pytest.raises(SignatureMalformed, match="EIP-2"):
        recover_address(digest, flipped)


@pytest.mark.parametrize(
    "r",
    [bytes(32), SECP256K1_ORDER.to_bytes(32, "big"), b"\xff" * 32],
    ids=["r-zero", "r-order", "r-max"],
)
def test_unrecoverable_signature(signer_key: EnclaveKey, r: bytes) -> None:
    digest = keccak256(b"m")
    sig = signer_key.sign_digest(digest)
    with pytest.raises(BadSignature) as err:
        recover_address(digest, r + sig[32:])
    assert err.value.reason == "BAD_SIGNATURE"


def test_zero_s_unrecoverable(signer_key: EnclaveKey) -> None:
    digest = keccak256(b"m")
    sig = signer_key.sign_digest(digest)
    with pytest.raises(BadSignature):
        recover_address(digest, sig[:32] + bytes(32) + sig[64:])


def test_sign_digest_requires_32_bytes(signer_key: EnclaveKey) -> None:
    with pytest.raises(InvalidArgument):
        signer_key.sign_digest(b"short")


@settings(max_examples=100)
@given(address=st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(address: bytes) -> None:
    assert checksum(address) == to_checksum_address(address)


def test_address_from_uncompressed_key(signer_key: EnclaveKey) -> None:
    from coincurve import PublicKey

    uncompressed = PublicKey(signer_key.public_key).format(compressed=False)
    assert address_from_public_key(uncompressed) == signer_key.address
    with pytest.raises(InvalidKey):
        address_from_public_key(b"\x02" + b"\xff" * 32)  # x beyond the field: not a point
    with pytest.raises(InvalidKey):
        address_from_public_key(uncompressed[1:])


def test_multiply_is_ecdh(signer_key: EnclaveKey) -> None:
    other = EnclaveKey.from_bytes(b"\x33" * 32)
    assert signer_key.multiply(other.public_key) == other.multiply(signer_key.public_key)
