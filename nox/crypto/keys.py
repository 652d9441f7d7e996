"""secp256k1 enclave keys and Ethereum addresses (DESIGN §3).

Signatures are 65 bytes `r ‖ s ‖ v` with v in {27, 28}, the form Solidity's `ecrecover`
takes. Verification accepts only that form and only low s (EIP-2, as OpenZeppelin's
`ECDSA.recover`): one canonical byte string per signature, so a signature cannot be
re-encoded (v as 0/1, or s as n − s) into a different valid one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

from coincurve import PrivateKey, PublicKey

from nox.crypto.exceptions import BadSignature, InvalidKey, SignatureMalformed
from nox.crypto.hashing import keccak256
from nox.errors import InvalidArgument

__all__ = [
    "SECP256K1_ORDER",
    "EnclaveKey",
    "address_from_public_key",
    "checksum",
    "recover_address",
]

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# s above n/2 is "high"; comparing the big-endian 32-byte strings equals comparing integers.
_HALF_ORDER_BYTES = (SECP256K1_ORDER // 2).to_bytes(32, "big")


class EnclaveKey:
    """A secp256k1 private key whose secret never shows in repr, str or pickle.

    Build one with `generate()` or `from_bytes()`; read the secret only through the explicit
    `secret_bytes()`.
    """

    __slots__ = ("_address", "_key", "_public_key")

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self._public_key: bytes = key.public_key.format(compressed=True)
        self._address: bytes = keccak256(key.public_key.format(compressed=False)[1:])[12:]

    @classmethod
    def generate(cls, rand: Callable[[int], bytes] = os.urandom) -> EnclaveKey:
        """A fresh key from `rand` (the OS CSPRNG unless a test injects another source)."""
        while True:
            secret = rand(32)
            if 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER:
                return cls(PrivateKey(secret))

    @classmethod
    def from_bytes(cls, secret: bytes) -> EnclaveKey:
        """The key with this 32-byte big-endian secret scalar (1 ≤ secret < n)."""
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER:
            raise InvalidKey("a secret key is a 32-byte scalar in [1, n-1]")
        return cls(PrivateKey(bytes(secret)))

    def secret_bytes(self) -> bytes:
        """The 32-byte secret scalar. Handle with care: never log or store it unencrypted."""
        return bytes(self._key.secret)

    @property
    def address(self) -> bytes:
        """The 20-byte Ethereum address of this key."""
        return self._address

    @property
    def public_key(self) -> bytes:
        """The 33-byte compressed SEC1 public key."""
        return self._public_key

    def sign_digest(self, digest: bytes) -> bytes:
        """A 65-byte signature r ‖ s ‖ v (v in {27, 28}, low s, RFC 6979) of a 32-byte digest."""
        if len(digest) != 32:
            raise InvalidArgument("a digest is 32 bytes")
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes((sig[64] + 27,))

    def multiply(self, point: bytes) -> bytes:
        """secret·P for a 33- or 65-byte SEC1 point, compressed (33 bytes): ECDH without hashing."""
        try:
            product = PublicKey(bytes(point)).multiply(self._key.secret)
            return bytes(product.format(compressed=True))
        except ValueError:
            raise InvalidKey("not a valid secp256k1 public key") from None

    def __repr__(self) -> str:
        return f"EnclaveKey(address={checksum(self._address)})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("EnclaveKey cannot be pickled; export secret_bytes() explicitly")


def address_from_public_key(public_key: bytes) -> bytes:
    """The 20-byte address of a SEC1 public key (33 bytes compressed or 65 uncompressed)."""
    if len(public_key) not in (33, 65):
        raise InvalidKey("a public key is 33 (compressed) or 65 (uncompressed) bytes")
    try:
        point = PublicKey(bytes(public_key))
    except ValueError:
        raise InvalidKey("not a point on secp256k1") from None
    return keccak256(point.format(compressed=False)[1:])[12:]


def _bad(message: str) -> NoReturn:
    raise SignatureMalformed(message)


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The address that made `signature` over the 32-byte `digest`.

    Raises SignatureMalformed for a wrong length, v not in {27, 28} or a high s, and
    BadSignature when no public key recovers (r or s zero or ≥ n, r not an x coordinate).
    """
    if len(digest) != 32:
        raise InvalidArgument("a digest is 32 bytes")
    if len(signature) != 65:
        _bad(f"a signature is 65 bytes, got {len(signature)}")
    v = signature[64]
    if v != 27 and v != 28:
        _bad(f"recovery id v must be 27 or 28, got {v}")
    if signature[32:64] > _HALF_ORDER_BYTES:
        _bad("s is in the upper half of the group order (EIP-2)")
    try:
        pub = PublicKey.from_signature_and_message(
            bytes(signature[:64]) + (b"\x00" if v == 27 else b"\x01"), bytes(digest), hasher=None
        )
    except ValueError:
        raise BadSignature("signature does not recover a public key") from None
    return keccak256(pub.format(compressed=False)[1:])[12:]


def checksum(address: bytes) -> str:
    """The EIP-55 mixed-case hex form `0x...` of a 20-byte address."""
    if len(address) != 20:
        raise InvalidArgument("an address is 20 bytes")
    hex_addr = address.hex()
    digest = keccak256(hex_addr.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hex_addr)
    )
