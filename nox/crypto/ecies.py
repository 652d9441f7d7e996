"""ECIES over secp256k1 with AES-256-GCM, bound to the handle (DESIGN §5).

    k random, K = k·G (33 bytes compressed), S = k·PK
    key = HKDF-SHA256(IKM = x(S), salt = 32 zero bytes, info = "ECIES:AES_GCM:v1", L = 32)
    ciphertext = AES-256-GCM(key, nonce (12 random bytes), plaintext, AAD = handle) ‖ tag (16)

The reference scheme uses no associated data; ours authenticates the 32-byte handle, so the
storage cannot move a ciphertext to another handle.

K is always encoded with prefix 0x02 (even y): the encryptor uses n − k when k·G has odd y,
which leaves k uniformly distributed. Only x(S) enters the key, and K and −K give S and −S
with the same x, so without this rule flipping K's prefix byte would still decrypt; with it,
every altered byte of K fails. Every failure to open a ciphertext of
the right shape (wrong key, any altered byte of ciphertext, K, nonce or handle) raises the
same DecryptionFailed, whatever step noticed it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nox.crypto.exceptions import DecryptionFailed, InvalidKey
from nox.crypto.keys import SECP256K1_ORDER
from nox.errors import InvalidArgument

__all__ = [
    "HKDF_INFO",
    "HKDF_SALT",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Ciphertext",
    "aes_key_from_shared_x",
    "decrypt",
    "decrypt_with",
    "decrypt_with_shared_point",
    "encrypt",
    "encrypt_with",
]

HKDF_INFO = b"ECIES:AES_GCM:v1"
HKDF_SALT = bytes(32)
NONCE_SIZE = 12
TAG_SIZE = 16
_HANDLE_SIZE = 32
_POINT_SIZE = 33


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """What is stored per handle: AES-GCM ciphertext ‖ tag, the ephemeral K, the GCM nonce."""

    ciphertext: bytes
    ephemeral_public_key: bytes
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.ciphertext) < TAG_SIZE:
            raise InvalidArgument("ciphertext is shorter than the 16-byte GCM tag")
        if len(self.ephemeral_public_key) != _POINT_SIZE:
            raise InvalidArgument("ephemeral public key must be 33 bytes (compressed SEC1)")
        if len(self.nonce) != NONCE_SIZE:
            raise InvalidArgument("nonce must be 12 bytes")

    def __repr__(self) -> str:
        return (
            f"Ciphertext(ciphertext=<{len(self.ciphertext)} bytes>, "
            f"ephemeral_public_key=0x{self.ephemeral_public_key.hex()}, nonce=0x{self.nonce.hex()})"
        )


def aes_key_from_shared_x(shared_x: bytes, info: bytes = HKDF_INFO) -> bytes:
    """The AES-256 key derived from the 32-byte x coordinate of the shared point."""
    if len(shared_x) != 32:
        raise InvalidArgument("shared x coordinate must be 32 bytes")
    hkdf = HKDF(algorithm=SHA256(), length=32, salt=HKDF_SALT, info=info)
    return hkdf.derive(bytes(shared_x))


def _check_handle(handle: bytes) -> bytes:
    if len(handle) != _HANDLE_SIZE:
        raise InvalidArgument("handle must be 32 bytes")
    return bytes(handle)


def encrypt(
    public_key: bytes,
    plaintext: bytes,
    handle: bytes,
    *,
    rand: Callable[[int], bytes] = os.urandom,
) -> Ciphertext:
    """Encrypt `plaintext` to `public_key` (33-byte compressed) for `handle` (32 bytes)."""
    return encrypt_with(public_key, plaintext, aad=_check_handle(handle), rand=rand)


def encrypt_with(
    public_key: bytes,
    plaintext: bytes,
    *,
    aad: bytes,
    info: bytes = HKDF_INFO,
    rand: Callable[[int], bytes] = os.urandom,
) -> Ciphertext:
    """The same ECIES with the caller's associated data and HKDF info (another protocol
    using the scheme, e.g. `nox.crypto.sealing`, gets its own `info`: domain separation)."""
    if len(public_key) != _POINT_SIZE:
        raise InvalidKey("public key must be 33 bytes (compressed SEC1)")
    try:
        recipient = PublicKey(bytes(public_key))
    except ValueError:
        raise InvalidKey("public key is not a point on secp256k1") from None
    while True:
        k = rand(32)
        if 0 < int.from_bytes(k, "big") < SECP256K1_ORDER:
            break
    ephemeral = PrivateKey(k).public_key.format(compressed=True)
    if ephemeral[0] == 0x03:  # use −k so that K has even y (canonical 0x02 prefix)
        k = (SECP256K1_ORDER - int.from_bytes(k, "big")).to_bytes(32, "big")
        ephemeral = b"\x02" + ephemeral[1:]
    shared_x = recipient.multiply(k).format(compressed=True)[1:]
    nonce = rand(NONCE_SIZE)
    key = aes_key_from_shared_x(shared_x, info)
    body = AESGCM(key).encrypt(nonce, bytes(plaintext), bytes(aad))
    return Ciphertext(ciphertext=body, ephemeral_public_key=ephemeral, nonce=nonce)


def _check_canonical(ct: Ciphertext) -> None:
    if ct.ephemeral_public_key[0] != 0x02:
        raise DecryptionFailed("ephemeral public key is not in its canonical (even y) form")


def _open(shared_x: bytes, ct: Ciphertext, aad: bytes, info: bytes = HKDF_INFO) -> bytes:
    try:
        return AESGCM(aes_key_from_shared_x(shared_x, info)).decrypt(ct.nonce, ct.ciphertext, aad)
    except InvalidTag:
        raise DecryptionFailed("ciphertext does not authenticate for this key and handle") from None


def decrypt(secret: bytes, ct: Ciphertext, handle: bytes) -> bytes:
    """Open `ct` with the recipient's 32-byte secret scalar."""
    return decrypt_with(secret, ct, aad=_check_handle(handle))


def decrypt_with(secret: bytes, ct: Ciphertext, *, aad: bytes, info: bytes = HKDF_INFO) -> bytes:
    """Open what `encrypt_with` sealed under the same associated data and HKDF info."""
    if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < SECP256K1_ORDER:
        raise InvalidKey("a secret key is a 32-byte scalar in [1, n-1]")
    _check_canonical(ct)
    try:
        shared = PublicKey(ct.ephemeral_public_key).multiply(bytes(secret))
    except ValueError:
        # An altered K that is no longer on the curve: as undecryptable as any other tamper.
        raise DecryptionFailed("ephemeral public key is not a point on secp256k1") from None
    return _open(shared.format(compressed=True)[1:], ct, bytes(aad), info)


def decrypt_with_shared_point(shared_point: bytes, ct: Ciphertext, handle: bytes) -> bytes:
    """Open `ct` with S = x·K already computed (e.g. combined from threshold partials).

    `shared_point` is 33 bytes compressed; it is checked to be on the curve.
    """
    aad = _check_handle(handle)
    _check_canonical(ct)
    if len(shared_point) != _POINT_SIZE:
        raise InvalidKey("shared point must be 33 bytes (compressed SEC1)")
    try:
        PublicKey(bytes(shared_point))
    except ValueError:
        raise InvalidKey("shared point is not on secp256k1") from None
    return _open(bytes(shared_point[1:]), ct, aad)
