"""A signed call from a real client: `noxctl envelope sign` prints the request, grpcurl sends
it (through server reflection, no .proto files) to the real gateway, which verifies it.

The signer is registered as a runner (sdk_support's registry). GetOperands then accepts the
outer envelope — signature, audience, window, role — records its nonce, and only then
fails on the (deliberately empty) nested assignment; sending the same bytes again is a
replay. An unregistered key is refused before anything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from sdk_support import CHAIN, Net, running_network

from nox.crypto.keys import EnclaveKey
from nox.sdk.keyfile import write_keyfile

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRPCURL = Path(sys.executable).parent / "grpcurl"
RUNNER = 2
PASS = "grpcurl test"


async def _run(
    *argv: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _signed_request(net: Net, keyfile: Path) -> str:
    code, out, err = await _run(
        sys.executable,
        "-m",
        "nox.cli",
        "envelope",
        "sign",
        "--key",
        str(keyfile),
        "--payload-type",
        "nox.v1.GetOperandsPayload",
        "--payload-json",
        json.dumps({"taskId": "AA" * 21 + "A="}),  # 32 zero bytes, base64
        "--audience",
        "0x" + net.gateway_address.hex(),
        "--chain-id",
        str(CHAIN),
        "--registry",
        "0x" + net.registry_address.hex(),
        env={**os.environ, "NOX_KEY_PASSPHRASE": PASS},
    )
    assert code == 0, err
    return out


async def _grpcurl(net: Net, request: str) -> str:
    code, out, err = await _run(
        str(GRPCURL),
        "-plaintext",
        "-d",
        "@",
        net.gateway_target,
        "nox.v1.GatewayService/GetOperands",
        stdin=request.encode(),
    )
    assert code != 0  # every call here is refused, each for its own reason
    match = re.search(r'"reason":"([A-Z_]+)"', out + err)  # grpcurl prints errors on stderr
    assert match, out + err
    return match.group(1)


async def test_grpcurl_sends_an_envelope_noxctl_signed(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        runner, stranger = EnclaveKey.generate(), EnclaveKey.generate()
        for key, name in ((runner, "runner.json"), (stranger, "stranger.json")):
            write_keyfile(tmp_path / name, key, PASS, iterations=16)  # cheap: test keys
        net.registry.roles[runner.address] = RUNNER

        request = await _signed_request(net, tmp_path / "runner.json")
        # Accepted as the runner's, nonce recorded; the empty assignment inside is refused.
        assert await _grpcurl(net, request) == "ENVELOPE_MALFORMED"
        assert await _grpcurl(net, request) == "NONCE_REPLAYED"

        unregistered = await _signed_request(net, tmp_path / "stranger.json")
        assert await _grpcurl(net, unregistered) == "SIGNER_NOT_REGISTERED"
