"""nox.crypto.sealing: a sealed input opens only for its own key, chain, type, owner, app."""

from __future__ import annotations

import os

import pytest

from nox.crypto import ecies
from nox.crypto.exceptions import SealedInputInvalid
from nox.crypto.keys import EnclaveKey
from nox.crypto.sealing import open_sealed_input, seal_input, sealed_aad
from nox.v1 import gateway_pb2

OWNER, APP = os.urandom(20), os.urandom(20)
TARGET = {"chain_id": 31337, "type_code": 11, "owner": OWNER, "application": APP}


def test_round_trip_and_fresh_randomness() -> None:
    key = EnclaveKey.generate()
    a = seal_input(key.public_key, b"\x00" * 7 + b"\x2a", **TARGET)  # type: ignore[arg-type]
    b = seal_input(key.public_key, b"\x00" * 7 + b"\x2a", **TARGET)  # type: ignore[arg-type]
    assert a.ephemeral_public_key != b.ephemeral_public_key  # nothing links two sealings
    assert open_sealed_input(key, a, **TARGET) == b"\x00" * 7 + b"\x2a"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"type_code": 12},
        {"owner": os.urandom(20)},
        {"application": os.urandom(20)},
    ],
)
def test_another_target_does_not_open(change: dict[str, object]) -> None:
    key = EnclaveKey.generate()
    sealed = seal_input(key.public_key, b"value", **TARGET)  # type: ignore[arg-type]
    with pytest.raises(SealedInputInvalid):
        open_sealed_input(key, sealed, **{**TARGET, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["ephemeral_public_key", "nonce", "ciphertext"])
def test_any_altered_byte_or_another_key_does_not_open(field: str) -> None:
    key = EnclaveKey.generate()
    sealed = seal_input(key.public_key, b"value", **TARGET)  # type: ignore[arg-type]
    with pytest.raises(SealedInputInvalid):
        open_sealed_input(EnclaveKey.generate(), sealed, **TARGET)  # type: ignore[arg-type]
    raw = bytearray(getattr(sealed, field))
    raw[-1] ^= 1
    altered = gateway_pb2.SealedPlaintext()
    altered.CopyFrom(sealed)
    setattr(altered, field, bytes(raw))
    with pytest.raises(SealedInputInvalid):
        open_sealed_input(key, altered, **TARGET)  # type: ignore[arg-type]
    with pytest.raises(SealedInputInvalid):  # malformed: a short nonce
        open_sealed_input(key, gateway_pb2.SealedPlaintext(nonce=b"x"), **TARGET)  # type: ignore[arg-type]


def test_domain_separated_from_stored_ciphertexts() -> None:
    """Same key, same associated data, but the stored-ciphertext HKDF info: it does not open."""
    key = EnclaveKey.generate()
    aad = sealed_aad(31337, 11, OWNER, APP)
    ct = ecies.encrypt_with(key.public_key, b"value", aad=aad)  # ecies.HKDF_INFO
    sealed = gateway_pb2.SealedPlaintext(
        ephemeral_public_key=ct.ephemeral_public_key, nonce=ct.nonce, ciphertext=ct.ciphertext
    )
    with pytest.raises(SealedInputInvalid):
        open_sealed_input(key, sealed, **TARGET)  # type: ignore[arg-type]
