"""`nox` reproduces the fixed vectors of tests/vectors/crypto_vectors.json (see its README)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from nox.crypto.ecies import Ciphertext, aes_key_from_shared_x, decrypt, encrypt
from nox.crypto.eip712 import Domain, envelope_digest
from nox.crypto.envelope import verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, recover_address
from nox.crypto.replay import MemoryReplayCache
from nox.handles import ValueType, decode_plaintext, encode_plaintext, result_handle
from nox.v1.envelope_pb2 import SignedEnvelope

SIGNER_SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


def load(repo_root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (repo_root / "tests" / "vectors" / "crypto_vectors.json").read_text()
    )
    return data


VECTORS_DIR = Path(__file__).resolve().parents[2] / "tests" / "vectors"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return load(Path(__file__).resolve().parents[2])


def test_vectors_file_is_the_scripts_output() -> None:
    """crypto_vectors.json is exactly what make_vectors.py writes (no hand edits)."""
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS_DIR / "make_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (VECTORS_DIR / "crypto_vectors.json").read_text() == module.render()


def test_envelope_vectors(vectors: dict[str, Any]) -> None:
    key = EnclaveKey.from_bytes(SIGNER_SECRET)
    assert len(vectors["envelopes"]) >= 3
    for v in vectors["envelopes"]:
        domain = Domain(v["chain_id"], bytes.fromhex(v["verifying_contract"]))
        payload = bytes.fromhex(v["payload"])
        audience = bytes.fromhex(v["audience"])
        nonce = bytes.fromhex(v["nonce"])
        digest = envelope_digest(
            domain,
            keccak256(payload),
            v["payload_type"],
            audience,
            v["issued_at"],
            v["expires_at"],
            nonce,
        )
        assert digest.hex() == v["digest"]
        signature = bytes.fromhex(v["signature"])
        assert key.sign_digest(digest) == signature
        assert recover_address(digest, signature).hex() == v["signer"]


def test_envelope_vector_verifies(vectors: dict[str, Any]) -> None:
    """The first vector is a complete envelope (empty google.protobuf.Empty payload)."""
    from google.protobuf.empty_pb2 import Empty

    v = vectors["envelopes"][0]
    env = SignedEnvelope(
        payload=bytes.fromhex(v["payload"]),
        payload_type=v["payload_type"],
        audience=bytes.fromhex(v["audience"]),
        issued_at=v["issued_at"],
        expires_at=v["expires_at"],
        nonce=bytes.fromhex(v["nonce"]),
        signature=bytes.fromhex(v["signature"]),
    )
    domain = Domain(v["chain_id"], bytes.fromhex(v["verifying_contract"]))
    verified = verify_envelope(
        env, Empty, domain=domain, audience=env.audience, now=0, replay=MemoryReplayCache()
    )
    assert verified.signer.hex() == v["signer"]
    assert verified.message == Empty()


def test_result_handle_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["result_handles"]:
        handle = result_handle(
            v["operator"],
            [bytes.fromhex(o) for o in v["operands"]],
            bytes.fromhex(v["nox_compute"]),
            bytes.fromhex(v["caller"]),
            v["block_timestamp"],
            v["output_index"],
            v["chain_id"],
            ValueType(v["type_code"]),
        )
        assert handle.to_bytes().hex() == v["handle"]


def test_ecies_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["ecies"]:
        draws = iter([bytes.fromhex(v["drawn_ephemeral_secret"]), bytes.fromhex(v["gcm_nonce"])])
        handle = bytes.fromhex(v["handle"])
        plaintext = bytes.fromhex(v["plaintext"])
        ct = encrypt(
            bytes.fromhex(v["recipient_public_key"]),
            plaintext,
            handle,
            rand=lambda n, d=draws: next(d),
        )
        assert ct.ephemeral_public_key.hex() == v["ephemeral_public_key"]
        assert ct.ciphertext.hex() == v["ciphertext"]
        assert aes_key_from_shared_x(bytes.fromhex(v["shared_x"])).hex() == v["aes_key"]
        stored = Ciphertext(
            ciphertext=bytes.fromhex(v["ciphertext"]),
            ephemeral_public_key=bytes.fromhex(v["ephemeral_public_key"]),
            nonce=bytes.fromhex(v["gcm_nonce"]),
        )
        assert decrypt(bytes.fromhex(v["recipient_secret"]), stored, handle) == plaintext


def test_plaintext_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["plaintexts"]:
        vt = ValueType(v["type_code"])
        assert vt.name == v["abi_type"]
        value = v["value"]
        if vt.kind in ("uint", "int"):
            value = int(value)
        elif vt.kind == "address":
            value = bytes.fromhex(value[2:])
        elif vt.kind == "fixed_bytes":
            value = bytes.fromhex(value)
        assert encode_plaintext(vt, value).hex() == v["plaintext"]
        assert decode_plaintext(vt, bytes.fromhex(v["plaintext"])) == value
