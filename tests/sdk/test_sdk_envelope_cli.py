"""`noxctl envelope sign|verify` as a user runs them (subprocesses), checked against the
generated request message and `nox.crypto.verify_envelope`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from nox.cli import main
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import verify_envelope
from nox.crypto.exceptions import UnexpectedSigner, WrongAudience
from nox.crypto.keys import EnclaveKey, checksum
from nox.crypto.replay import MemoryReplayCache
from nox.errors import InvalidArgument
from nox.sdk.envelopes import envelope_from_json, open_envelope, payload_from_json, sign_request
from nox.sdk.keyfile import write_keyfile
from nox.v1.orchestrator_pb2 import HeartbeatPayload, HeartbeatRequest

REPO = Path(__file__).resolve().parents[2]
REGISTRY = bytes.fromhex("22" * 20)
AUDIENCE = bytes.fromhex("11" * 20)
CHAIN = 31337
NOW = 1_800_000_000
PASS = "test passphrase"


def noxctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`noxctl envelope ARGS` in its own process, as a user runs it."""
    env = {**os.environ, "NOX_KEY_PASSPHRASE": PASS}
    return subprocess.run(
        [sys.executable, "-m", "nox.cli", "envelope", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """`noxctl envelope ARGS` in this process (same code path, no interpreter start-up)."""
    monkeypatch.setenv("NOX_KEY_PASSPHRASE", PASS)

    def go(*args: str) -> Ran:
        capsys.readouterr()
        code = main(["envelope", *args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return go


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EnclaveKey]:
    key = EnclaveKey.generate()
    path = tmp_path_factory.mktemp("keys") / "runner.json"
    write_keyfile(path, key, PASS, iterations=16)  # cheap scrypt: a throw-away test key
    return path, key


def _domain_args() -> list[str]:
    return ["--chain-id", str(CHAIN), "--registry", "0x" + REGISTRY.hex()]


def _sign(
    keyfile: Path, payload_json: str, *extra: str, runner: Callable[..., Any] = noxctl
) -> Any:
    return runner(
        "sign",
        "--key",
        str(keyfile),
        "--payload-type",
        "nox.v1.HeartbeatPayload",
        "--payload-json",
        payload_json,
        "--audience",
        "0x" + AUDIENCE.hex(),
        *_domain_args(),
        "--now",
        str(NOW),
        "--ttl",
        "120",
        *extra,
    )


def test_sign_prints_a_request_grpc_json_parses_and_verify_envelope_accepts(
    keyfile: tuple[Path, EnclaveKey], tmp_path: Path
) -> None:
    path, key = keyfile
    payload = {"capacity": 4, "supportedOperators": [1, 2, 16], "softwareVersion": "x"}
    payload_file = tmp_path / "payload.json"
    payload_file.write_text(json.dumps(payload))
    result = _sign(path, "@" + str(payload_file))
    assert result.returncode == 0, result.stderr

    # Exactly what `grpcurl -d @` sends: the request message in proto3 JSON.
    request = json_format.Parse(result.stdout, HeartbeatRequest())
    env = request.envelope
    assert (env.issued_at, env.expires_at, env.audience) == (NOW, NOW + 120, AUDIENCE)
    assert json.loads(result.stdout)["envelope"]["payloadType"] == "nox.v1.HeartbeatPayload"
    verified = verify_envelope(
        env,
        HeartbeatPayload,
        domain=Domain(chain_id=CHAIN, verifying_contract=REGISTRY),
        audience=AUDIENCE,
        now=NOW + 5,
        replay=MemoryReplayCache(),
    )
    assert verified.signer == key.address
    assert verified.message == HeartbeatPayload(
        capacity=4, supported_operators=[1, 2, 16], software_version="x"
    )

    # And `verify` reads the same text back (stdin), naming the signer and the payload.
    checked = noxctl(
        "verify",
        "-",
        *_domain_args(),
        "--now",
        str(NOW + 5),
        "--signer",
        checksum(key.address),
        "--audience",
        "0x" + AUDIENCE.hex(),
        stdin=result.stdout,
    )
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["signer"] == checksum(key.address)
    assert report["payload"] == payload


def test_verify_refuses_tampered_expired_and_misaddressed_envelopes(
    keyfile: tuple[Path, EnclaveKey], run: Callable[..., Ran]
) -> None:
    path, key = keyfile
    signed = _sign(path, '{"capacity": 1}', runner=run)
    assert signed.returncode == 0, signed.stderr
    document = json.loads(signed.stdout)

    tampered = json.loads(signed.stdout)
    tampered["envelope"]["payload"] = base64.b64encode(
        HeartbeatPayload(capacity=99).SerializeToString()
    ).decode()
    cases = [
        # A changed payload recovers to another address than the key's.
        (tampered, ["--now", str(NOW)], "UNEXPECTED_SIGNER"),
        (document, ["--now", str(NOW + 121)], "ENVELOPE_EXPIRED"),
        (document, ["--now", str(NOW), "--audience", "0x" + "33" * 20], "WRONG_AUDIENCE"),
    ]
    for doc, extra, reason in cases:
        result = run(
            "verify",
            json.dumps(doc),
            *_domain_args(),
            "--signer",
            checksum(key.address),
            *extra,
        )
        assert result.returncode == 1, (reason, result.stdout)
        assert reason in result.stderr


def test_sign_errors_are_reported_with_their_reason(
    keyfile: tuple[Path, EnclaveKey], run: Callable[..., Ran]
) -> None:
    path, _ = keyfile
    bad_type = run(
        "sign",
        "--key",
        str(path),
        "--payload-type",
        "google.protobuf.Empty",
        "--payload-json",
        "{}",
        "--audience",
        "0x" + AUDIENCE.hex(),
        *_domain_args(),
    )
    assert bad_type.returncode == 1
    assert "unknown payload type" in bad_type.stderr
    bad_json = _sign(path, '{"noSuchField": 1}', runner=run)
    assert bad_json.returncode == 1
    assert "does not parse as nox.v1.HeartbeatPayload" in bad_json.stderr
    wrong_pass = _sign(path, "{}", "--passphrase-env", "NO_SUCH_VARIABLE_SET", runner=run)
    assert wrong_pass.returncode == 1
    assert "no passphrase" in wrong_pass.stderr


def test_library_helpers_match_the_cli_contract() -> None:
    key = EnclaveKey.generate()
    domain = Domain(chain_id=CHAIN, verifying_contract=REGISTRY)
    payload = payload_from_json("nox.v1.HeartbeatPayload", '{"capacity": 2}')
    env = sign_request(key, payload, domain=domain, audience=AUDIENCE, now=NOW)
    bare = json.dumps(json_format.MessageToDict(env))
    assert envelope_from_json(bare) == env
    assert envelope_from_json(json.dumps({"envelope": json.loads(bare)})) == env
    opened = open_envelope(env, domain=domain, now=NOW, expected_signer=key.address)
    assert opened.message == HeartbeatPayload(capacity=2)
    with pytest.raises(WrongAudience):
        open_envelope(env, domain=domain, now=NOW, audience=bytes(20))
    with pytest.raises(UnexpectedSigner):
        open_envelope(env, domain=domain, now=NOW, expected_signer=bytes(20))
    with pytest.raises(InvalidArgument):
        envelope_from_json("[1, 2]")
