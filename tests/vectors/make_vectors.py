"""Regenerate crypto_vectors.json from independent implementations (not from `nox`).

    .venv/bin/python tests/vectors/make_vectors.py

Sources: eth_account (EIP-712 typed-data hashing, secp256k1 signing and recovery), eth_abi
(ABI encoding of result-handle preimages and of plaintext values), eth_hash's pycryptodome
backend (keccak256), coincurve and cryptography's primitives (ECIES). All inputs are fixed
below, and ECIES randomness is pinned, so the output is reproducible byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coincurve import PrivateKey, PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_abi import encode
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_hash.backends.pycryptodome import keccak256

ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
OUT = Path(__file__).with_name("crypto_vectors.json")

# Test-only keys (never used anywhere real).
SIGNER_SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
KMS_SECRET = bytes.fromhex("c85ef7d79691fe79573b1a7064c19c1a9819ebdbd1faaab1a8ec92344438aaf4")

ENVELOPE_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Envelope": [
        {"name": "payloadHash", "type": "bytes32"},
        {"name": "payloadType", "type": "string"},
        {"name": "audience", "type": "address"},
        {"name": "issuedAt", "type": "uint64"},
        {"name": "expiresAt", "type": "uint64"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


def envelope_vector(
    chain_id: int,
    contract: bytes,
    payload: bytes,
    payload_type: str,
    audience: bytes,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
) -> dict[str, Any]:
    typed = {
        "types": ENVELOPE_TYPES,
        "primaryType": "Envelope",
        "domain": {
            "name": "Nox",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x" + contract.hex(),
        },
        "message": {
            "payloadHash": keccak256(payload),
            "payloadType": payload_type,
            "audience": "0x" + audience.hex(),
            "issuedAt": issued_at,
            "expiresAt": expires_at,
            "nonce": nonce,
        },
    }
    digest = _hash_eip191_message(encode_typed_data(full_message=typed))
    signed = Account.unsafe_sign_hash(digest, SIGNER_SECRET)
    return {
        "chain_id": chain_id,
        "verifying_contract": contract.hex(),
        "payload": payload.hex(),
        "payload_type": payload_type,
        "audience": audience.hex(),
        "issued_at": issued_at,
        "expires_at": expires_at,
        "nonce": nonce.hex(),
        "digest": digest.hex(),
        "signature": bytes(signed.signature).hex(),
        "signer": Account.from_key(SIGNER_SECRET).address[2:].lower(),
    }


def result_handle_vector(
    operator: int,
    operands: list[bytes],
    compute: bytes,
    caller: bytes,
    ts: int,
    index: int,
    chain_id: int,
    type_code: int,
) -> dict[str, Any]:
    preimage = encode(
        ["uint8", "bytes32[]", "address", "address", "uint256", "uint8"],
        [operator, operands, "0x" + compute.hex(), "0x" + caller.hex(), ts, index],
    )
    handle = keccak256(preimage)[:26] + chain_id.to_bytes(4, "big") + bytes((type_code, 0))
    return {
        "operator": operator,
        "operands": [o.hex() for o in operands],
        "nox_compute": compute.hex(),
        "caller": caller.hex(),
        "block_timestamp": ts,
        "output_index": index,
        "chain_id": chain_id,
        "type_code": type_code,
        "handle": handle.hex(),
    }


def ecies_vector(k: bytes, nonce: bytes, handle: bytes, plaintext: bytes) -> dict[str, Any]:
    kms_public = PrivateKey(KMS_SECRET).public_key
    drawn = k
    if PrivateKey(k).public_key.format(compressed=True)[0] == 3:  # K with even y (0x02)
        k = (ORDER - int.from_bytes(k, "big")).to_bytes(32, "big")
    ephemeral = PrivateKey(k).public_key.format(compressed=True)
    shared_x = kms_public.multiply(k).format(compressed=True)[1:]
    key = HKDF(SHA256(), 32, salt=bytes(32), info=b"ECIES:AES_GCM:v1").derive(shared_x)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, handle)
    assert PublicKey(ephemeral).multiply(KMS_SECRET).format()[1:] == shared_x
    return {
        "recipient_secret": KMS_SECRET.hex(),
        "recipient_public_key": kms_public.format(compressed=True).hex(),
        "drawn_ephemeral_secret": drawn.hex(),
        "ephemeral_secret": k.hex(),
        "gcm_nonce": nonce.hex(),
        "handle": handle.hex(),
        "plaintext": plaintext.hex(),
        "ephemeral_public_key": ephemeral.hex(),
        "shared_x": shared_x.hex(),
        "aes_key": key.hex(),
        "ciphertext": ciphertext.hex(),
    }


def plaintext_vectors() -> list[dict[str, Any]]:
    """Plaintext = the value's ABI word, cut to the type's size (left for numbers/addresses,
    right for bytesN)."""
    cases: list[tuple[int, str, Any]] = [
        (0, "bool", False),
        (0, "bool", True),
        (1, "address", "0x" + "ab" * 19 + "cd"),
        (4, "uint8", 255),
        (5, "uint16", 0x1234),
        (35, "uint256", 2**256 - 1),
        (14, "uint88", 2**87 + 5),
        (36, "int8", -128),
        (36, "int8", 127),
        (37, "int16", -2),
        (67, "int256", -(2**255)),
        (50, "int120", -(2**100) + 7),
        (68, "bytes1", b"\x7f"),
        (99, "bytes32", bytes(range(32))),
        (79, "bytes12", b"nox-handles!"),
    ]
    out = []
    for code, abi_type, value in cases:
        word = encode([abi_type], [value])
        if abi_type.startswith("bytes"):
            size = int(abi_type[5:])
            plain = word[:size]
        else:
            size = {"bool": 1, "address": 20}.get(abi_type) or int(abi_type.lstrip("uint")) // 8
            plain = word[32 - size :]
        shown = value.hex() if isinstance(value, bytes) else value
        if isinstance(shown, int) and not isinstance(shown, bool):
            shown = str(shown)  # JSON-safe for 256-bit values
        out.append(
            {"type_code": code, "abi_type": abi_type, "value": shown, "plaintext": plain.hex()}
        )
    return out


def build() -> dict[str, Any]:
    """Every vector, as written to crypto_vectors.json."""
    h = keccak256
    return {
        "envelopes": [
            envelope_vector(
                31337,
                h(b"registry")[:20],
                b"",
                "google.protobuf.Empty",
                h(b"aud")[:20],
                0,
                0,
                bytes(32),
            ),
            envelope_vector(
                421614,
                h(b"registry2")[:20],
                b"\x0a\x03abc",
                "nox.v1.GetOperandsPayload",
                h(b"gateway")[:20],
                1_760_000_000,
                1_760_000_060,
                h(b"nonce-1"),
            ),
            envelope_vector(
                2**32 - 1,
                bytes(20),
                bytes(1000),
                "ünïcode.Type",
                b"\xff" * 20,
                2**64 - 2,
                2**64 - 1,
                b"\xff" * 32,
            ),
        ],
        "result_handles": [
            result_handle_vector(
                1,
                [h(b"a"), h(b"b")],
                h(b"compute")[:20],
                h(b"app")[:20],
                1_760_000_000,
                0,
                31337,
                35,
            ),
            result_handle_vector(
                5,
                [h(b"a"), h(b"b")],
                h(b"compute")[:20],
                h(b"app")[:20],
                1_760_000_000,
                1,
                31337,
                0,
            ),
            result_handle_vector(
                16,
                [h(b"x"), h(b"y"), h(b"z")],
                h(b"c")[:20],
                h(b"t")[:20],
                2**256 - 1,
                2,
                2**32 - 1,
                5,
            ),
            result_handle_vector(0, [], bytes(20), bytes(20), 0, 0, 1, 4),
        ],
        "ecies": [
            ecies_vector(
                h(b"k1"),
                h(b"n1")[:12],
                h(b"handle-1")[:30] + bytes((35, 0)),
                (1234).to_bytes(32, "big"),
            ),
            ecies_vector(h(b"k2"), bytes(12), h(b"handle-2")[:30] + bytes((0, 0)), b"\x01"),
            ecies_vector(h(b"k3"), b"\xff" * 12, h(b"handle-3")[:30] + bytes((2, 0)), b""),
        ],
        "plaintexts": plaintext_vectors(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.write_text(render())
    print(f"wrote {OUT.name}")


if __name__ == "__main__":
    main()
