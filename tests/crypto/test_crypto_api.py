"""Pins the public names other components import (nox/crypto and nox/handles), and runs the
envelope benchmark once in its machine-readable mode (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nox.crypto.ecies
import nox.crypto.eip712
import nox.crypto.envelope
import nox.crypto.exceptions
import nox.crypto.hashing
import nox.crypto.keys
import nox.crypto.replay
import nox.crypto.tags
import nox.handles

REQUIRED = {
    nox.crypto.hashing: {"keccak256"},
    nox.crypto.keys: {"EnclaveKey", "recover_address", "address_from_public_key", "checksum"},
    nox.crypto.eip712: {"Domain", "envelope_digest"},
    nox.crypto.envelope: {
        "sign_envelope",
        "sign_envelope_with_hash",
        "verify_envelope",
        "Verified",
    },
    nox.crypto.replay: {"ReplayCache", "MemoryReplayCache", "SqlReplayCache"},
    nox.crypto.tags: {"TagKey", "tag_point", "tag_key_from_point", "TAG_KEY_HANDLE"},
    nox.crypto.ecies: {
        "Ciphertext",
        "encrypt",
        "decrypt",
        "decrypt_with_shared_point",
        "aes_key_from_shared_x",
    },
    nox.crypto.exceptions: {
        "EnvelopeMalformed",
        "BadSignature",
        "WrongAudience",
        "EnvelopeExpired",
        "NotYetValid",
        "ReplayedNonce",
        "PayloadTypeMismatch",
        "EnvelopeTooLarge",
        "DecryptionFailed",
    },
    nox.handles: {
        "ValueType",
        "BOOL",
        "ADDRESS",
        "uint",
        "int_",
        "fixed_bytes",
        "encode_plaintext",
        "decode_plaintext",
        "Handle",
        "new_input_handle",
        "result_handle",
        "value_tag",
    },
}


@pytest.mark.parametrize("module", list(REQUIRED), ids=lambda m: m.__name__)
def test_public_api(module: object) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert REQUIRED[module] <= exported  # type: ignore[index]
    for name in exported:
        assert hasattr(module, name)


def test_benchmark_runs() -> None:
    script = Path(__file__).resolve().parents[2] / "bench" / "envelope.py"
    out = subprocess.run(
        [sys.executable, str(script), "--iterations", "20", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result = json.loads(out)
    assert set(result["median_us"]) == {"bare_sign", "sign", "bare_recover", "verify"}
    assert result["iterations"] == 20
    assert result["ratio"]["verify_vs_bare_recover"] > 0
