"""Sealed inputs: a user's plaintext encrypted to the gateway's enclave key (issue 14).

A client never sends an input's plaintext in the clear: it seals it with ECIES
(`nox.crypto.ecies.encrypt_with`) to the gateway's enclave public key, under its own HKDF
info and with associated data that names where the value may go:

    info = "NOX:SEALED_INPUT:v1"
    aad  = "nox.sealed-input.v1" ‖ chain id (uint64 BE) ‖ type code (uint32 BE)
           ‖ owner (20 bytes) ‖ application (20 bytes)

so a sealed value captured on the wire cannot be replayed under another chain, type, owner
or application (it does not open: SEALED_INPUT_INVALID), and a sealed input is never
confused with a stored ciphertext (different HKDF info, and a stored ciphertext's
associated data is a 32-byte handle).

Why the enclave signing key and not a separate input key: the gateway's enclave key is
generated inside the TEE at start, never leaves it and dies with the process, and it is
exactly what NoxRegistry binds to the attested quote; a separate input key would have the
same lifetime, and would add a signature the client must check and a second key to bind to
the attestation, for no gain. Using one secp256k1 key for ECDSA signatures (over EIP-712
digests) and for ECIES key agreement (through HKDF with a dedicated info string) is the
arrangement Ethereum's devp2p/RLPx has used for its node keys for years with no known
cross-protocol attack. If the gateway ever needs forward secrecy for inputs (a rotating
input key) this is the one place to change, together with GetGatewayInfo.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from nox.crypto import ecies
from nox.crypto.exceptions import SealedInputInvalid
from nox.crypto.keys import EnclaveKey
from nox.errors import FailedPrecondition, InvalidArgument
from nox.v1 import gateway_pb2

__all__ = [
    "SEALED_INPUT_AAD_PREFIX",
    "SEALED_INPUT_INFO",
    "open_sealed_input",
    "seal_input",
    "sealed_aad",
    "sealed_input_request",
]

SEALED_INPUT_INFO = b"NOX:SEALED_INPUT:v1"
SEALED_INPUT_AAD_PREFIX = b"nox.sealed-input.v1"


def sealed_aad(chain_id: int, type_code: int, owner: bytes, application: bytes) -> bytes:
    """The associated data binding a sealed input to its request (see the module doc)."""
    if not 0 <= chain_id < 2**64 or not 0 <= type_code < 2**32:
        raise InvalidArgument("chain id must fit 64 bits and the type code 32 bits")
    if len(owner) != 20 or len(application) != 20:
        raise InvalidArgument("owner and application must be 20-byte addresses")
    return (
        SEALED_INPUT_AAD_PREFIX
        + struct.pack(">QI", chain_id, type_code)
        + bytes(owner)
        + bytes(application)
    )


def seal_input(
    gateway_public_key: bytes,
    plaintext: bytes,
    *,
    chain_id: int,
    type_code: int,
    owner: bytes,
    application: bytes,
    rand: Callable[[int], bytes] = os.urandom,
) -> gateway_pb2.SealedPlaintext:
    """Seal an encoded plaintext to the gateway's 33-byte enclave public key."""
    ct = ecies.encrypt_with(
        gateway_public_key,
        plaintext,
        aad=sealed_aad(chain_id, type_code, owner, application),
        info=SEALED_INPUT_INFO,
        rand=rand,
    )
    return gateway_pb2.SealedPlaintext(
        ephemeral_public_key=ct.ephemeral_public_key, nonce=ct.nonce, ciphertext=ct.ciphertext
    )


def sealed_input_request(
    gateway_public_key: bytes,
    plaintext: bytes,
    *,
    chain_id: int,
    type_code: int,
    owner: bytes,
    application: bytes,
) -> gateway_pb2.EncryptInputRequest:
    """A whole EncryptInputRequest carrying `plaintext` sealed (what every caller sends)."""
    return gateway_pb2.EncryptInputRequest(
        chain_id=chain_id,
        type_code=type_code,
        owner_address=owner,
        application_address=application,
        sealed_plaintext=seal_input(
            gateway_public_key,
            plaintext,
            chain_id=chain_id,
            type_code=type_code,
            owner=owner,
            application=application,
        ),
    )


def open_sealed_input(
    key: EnclaveKey,
    sealed: gateway_pb2.SealedPlaintext,
    *,
    chain_id: int,
    type_code: int,
    owner: bytes,
    application: bytes,
) -> bytes:
    """The plaintext of `sealed`, opened with the gateway's enclave key; raises
    SealedInputInvalid (never saying which check failed) when it does not open."""
    aad = sealed_aad(chain_id, type_code, owner, application)
    try:
        ct = ecies.Ciphertext(
            ciphertext=bytes(sealed.ciphertext),
            ephemeral_public_key=bytes(sealed.ephemeral_public_key),
            nonce=bytes(sealed.nonce),
        )
        return ecies.decrypt_with(key.secret_bytes(), ct, aad=aad, info=SEALED_INPUT_INFO)
    except (InvalidArgument, FailedPrecondition):
        raise SealedInputInvalid(
            "the sealed input does not open for this gateway, chain, type, owner and application",
            metadata={"field": "sealed_plaintext"},
        ) from None
