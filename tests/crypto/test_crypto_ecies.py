"""ECIES (DESIGN §5): round trips for every type, and every single-byte tamper fails."""

from __future__ import annotations

import dataclasses
import random

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.crypto.ecies import (
    Ciphertext,
    aes_key_from_shared_x,
    decrypt,
    decrypt_with_shared_point,
    encrypt,
)
from nox.crypto.exceptions import DecryptionFailed, InvalidKey
from nox.crypto.keys import EnclaveKey
from nox.errors import InvalidArgument
from nox.handles import ValueType, encode_plaintext, new_input_handle

KMS = EnclaveKey.from_bytes(b"\x5a" * 32)
CHAIN = 31337


def sample_value(vt: ValueType, rng: random.Random) -> int | bool | bytes | str:
    kind = vt.kind
    if kind == "bool":
        return rng.random() < 0.5
    if kind in ("uint", "int"):
        return rng.randint(vt.min_value, vt.max_value)
    if kind == "string":
        return "héllo, nox ✓"
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 100))
    return rng.randbytes(vt.byte_size)  # address, bytesN


@pytest.mark.parametrize("code", range(100))
def test_round_trip_every_type(code: int) -> None:
    rng = random.Random(code)
    vt = ValueType.from_code(code)
    plaintext = encode_plaintext(vt, sample_value(vt, rng))
    handle = new_input_handle(CHAIN, vt).to_bytes()
    ct = encrypt(KMS.public_key, plaintext, handle)
    assert len(ct.ciphertext) == len(plaintext) + 16
    assert ct.ephemeral_public_key[0] == 0x02
    assert decrypt(KMS.secret_bytes(), ct, handle) == plaintext
    # The threshold path: S = x·K rebuilt elsewhere opens it too.
    shared = KMS.multiply(ct.ephemeral_public_key)
    assert decrypt_with_shared_point(shared, ct, handle) == plaintext


def tampered(data: bytes, position: int) -> bytes:
    return data[:position] + bytes((data[position] ^ 0x01,)) + data[position + 1 :]


@pytest.fixture(scope="module")
def sealed() -> tuple[Ciphertext, bytes, bytes]:
    handle = new_input_handle(CHAIN, ValueType.from_code(5)).to_bytes()
    plaintext = b"\x12\x34"
    return encrypt(KMS.public_key, plaintext, handle), handle, plaintext


@pytest.mark.parametrize("part", ["ciphertext", "ephemeral_public_key", "nonce", "handle"])
@pytest.mark.parametrize("flip", [0x01, 0x80, 0xFF])
def test_any_single_byte_tamper_fails(
    sealed: tuple[Ciphertext, bytes, bytes], part: str, flip: int
) -> None:
    ct, handle, plaintext = sealed
    assert decrypt(KMS.secret_bytes(), ct, handle) == plaintext
    original = handle if part == "handle" else getattr(ct, part)
    for position in range(len(original)):
        changed = bytearray(original)
        changed[position] ^= flip
        if part == "handle":
            args = (ct, bytes(changed))
        else:
            args = (dataclasses.replace(ct, **{part: bytes(changed)}), handle)
        with pytest.raises(DecryptionFailed) as err:
            decrypt(KMS.secret_bytes(), *args)
        assert err.value.reason == "DECRYPTION_FAILED"
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        if part != "ephemeral_public_key":  # an altered K yields another shared point
            with pytest.raises(DecryptionFailed):
                decrypt_with_shared_point(KMS.multiply(ct.ephemeral_public_key), *args)


def test_wrong_key_fails(sealed: tuple[Ciphertext, bytes, bytes]) -> None:
    ct, handle, _ = sealed
    with pytest.raises(DecryptionFailed):
        decrypt(b"\x5b" * 32, ct, handle)


def test_ciphertext_bound_to_its_handle() -> None:
    vt = ValueType.from_code(35)
    a, b = new_input_handle(CHAIN, vt).to_bytes(), new_input_handle(CHAIN, vt).to_bytes()
    ct = encrypt(KMS.public_key, bytes(32), a)
    with pytest.raises(DecryptionFailed):
        decrypt(KMS.secret_bytes(), ct, b)


def test_truncated_or_extended_ciphertext_fails(sealed: tuple[Ciphertext, bytes, bytes]) -> None:
    ct, handle, _ = sealed
    for body in (ct.ciphertext[:-1], ct.ciphertext + b"\x00", ct.ciphertext[1:]):
        with pytest.raises(DecryptionFailed):
            decrypt(KMS.secret_bytes(), dataclasses.replace(ct, ciphertext=body), handle)


def test_fresh_randomness_each_time() -> None:
    handle = new_input_handle(CHAIN, ValueType.from_code(0)).to_bytes()
    a, b = encrypt(KMS.public_key, b"\x01", handle), encrypt(KMS.public_key, b"\x01", handle)
    assert a.ephemeral_public_key != b.ephemeral_public_key
    assert a.nonce != b.nonce
    assert a.ciphertext != b.ciphertext


def test_injected_randomness_is_deterministic() -> None:
    handle = bytes(32)

    def fixed(n: int) -> bytes:
        return b"\x07" * n

    assert encrypt(KMS.public_key, b"x", handle, rand=fixed) == encrypt(
        KMS.public_key, b"x", handle, rand=fixed
    )


def test_shape_errors_are_invalid_argument(sealed: tuple[Ciphertext, bytes, bytes]) -> None:
    ct, handle, _ = sealed
    with pytest.raises(InvalidArgument):
        Ciphertext(
            ciphertext=bytes(15), ephemeral_public_key=ct.ephemeral_public_key, nonce=ct.nonce
        )
    with pytest.raises(InvalidArgument):
        dataclasses.replace(ct, nonce=bytes(11))
    with pytest.raises(InvalidArgument):
        dataclasses.replace(ct, ephemeral_public_key=ct.ephemeral_public_key[1:])
    with pytest.raises(InvalidArgument):
        decrypt(KMS.secret_bytes(), ct, handle[:31])
    with pytest.raises(InvalidArgument):
        encrypt(KMS.public_key, b"x", handle + b"\x00")
    with pytest.raises(InvalidKey):
        encrypt(KMS.public_key[1:], b"x", handle)
    with pytest.raises(InvalidKey):
        encrypt(b"\x02" + b"\xff" * 32, b"x", handle)  # not a point
    with pytest.raises(InvalidKey):
        decrypt(bytes(32), ct, handle)
    with pytest.raises(InvalidKey):
        decrypt_with_shared_point(b"\x02" + b"\xff" * 32, ct, handle)
    with pytest.raises(InvalidArgument):
        aes_key_from_shared_x(bytes(31))


def test_ciphertext_repr_hides_body(sealed: tuple[Ciphertext, bytes, bytes]) -> None:
    ct, _, _ = sealed
    assert ct.ciphertext.hex() not in repr(ct)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=512), handle=st.binary(min_size=32, max_size=32))
def test_round_trip_any_bytes(plaintext: bytes, handle: bytes) -> None:
    assert decrypt(KMS.secret_bytes(), encrypt(KMS.public_key, plaintext, handle), handle) == (
        plaintext
    )


def test_odd_ephemeral_is_negated() -> None:
    """A drawn k whose K has odd y is replaced by n − k: K is stored as 0x02 ‖ x."""
    from coincurve import PrivateKey

    from nox.crypto.keys import SECP256K1_ORDER

    k = next(
        bytes([i]) * 32
        for i in range(1, 50)
        if PrivateKey(bytes([i]) * 32).public_key.format()[0] == 0x03
    )
    draws = iter([k, bytes(12)])
    ct = encrypt(KMS.public_key, b"v", bytes(32), rand=lambda n: next(draws))
    negated = (SECP256K1_ORDER - int.from_bytes(k, "big")).to_bytes(32, "big")
    assert ct.ephemeral_public_key == PrivateKey(negated).public_key.format()
    assert ct.ephemeral_public_key[1:] == PrivateKey(k).public_key.format()[1:]
    assert decrypt(KMS.secret_bytes(), ct, bytes(32)) == b"v"
