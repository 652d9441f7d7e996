"""Every service registers its own enclave key, kept in memory only (issue 15).

The attack: anyone who can read a node's disk (a backup, a host operator, a stolen volume)
looks for an enclave private key there, to sign as that node. A multi-process devnet (each
service a `noxctl serve` child, as production runs them) is started, two services are
restarted, transfers run; then every 32-byte window of every file the devnet and the test
wrote, and every 64-hex-digit run in them, is tried as a secp256k1 secret: none may be the
key of an enclave address the registry ever recorded. Before this change the KMS nodes and
the gateway got their enclave keys from `dangerous_*` key files written by the devnet, which
this scan finds.

The same run shows the self-registration itself: `noxctl audit registry --json` lists every
role, gateway and KMS nodes included, with its quote verified; a restarted KMS node and
gateway come back with new enclave addresses, registered and verified; a transfer after the
restarts decrypts right, for a client that connected before them (it asks the gateway's new
address again).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from coincurve import PublicKey

from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, checksum
from nox.devnet.config import DevnetSettings
from nox.devnet.load import TokenLoad
from nox.devnet.processes import ProcessDevnet

_HEX_RUN = re.compile(rb"[0-9a-fA-F]{64,}")


def _address_of(secret: bytes) -> bytes | None:
    try:
        public = PublicKey.from_secret(secret).format(compressed=False)
    except ValueError:  # zero or not below the group order: not a key
        return None
    return keccak256(public[1:])[12:]


def _candidates(data: bytes) -> Iterable[bytes]:
    """Every 32-byte window, and every 32 bytes written as 64 hex digits."""
    for offset in range(len(data) - 31):
        yield data[offset : offset + 32]
    for run in _HEX_RUN.finditer(data):
        text = run.group()
        for offset in range(len(text) - 63):
            yield bytes.fromhex(text[offset : offset + 64].decode())


def enclave_secrets_in(roots: Iterable[Path], addresses: set[bytes]) -> list[str]:
    """The files under `roots` holding the private key of one of `addresses`."""
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            if any(_address_of(c) in addresses for c in set(_candidates(data))):
                found.append(str(path.relative_to(root)))
    return found


def test_the_scan_finds_a_key_written_raw_or_as_hex(tmp_path: Path) -> None:
    """The scan itself can fail: a key in a file, raw or hex, is found; another key is not."""
    raw, hexed, other = EnclaveKey.generate(), EnclaveKey.generate(), EnclaveKey.generate()
    (tmp_path / "a.bin").write_bytes(b"\x00header" + raw.secret_bytes() + b"trailer")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"k": "0x" + hexed.secret_bytes().hex()}))
    (tmp_path / "c.txt").write_text("nothing here " + "ab" * 40)
    addresses = {raw.address, hexed.address}
    assert enclave_secrets_in([tmp_path], addresses) == ["a.bin", "sub/b.json"]
    assert enclave_secrets_in([tmp_path], {other.address}) == []


def _audit(net: ProcessDevnet) -> dict[str, Any]:
    assert net.chain is not None
    assert net.chain_rpc_url is not None
    done = subprocess.run(
        [sys.executable, "-m", "nox.cli", "audit", "registry", "--json",
         "--rpc", net.chain_rpc_url, "--registry", net.chain.deployment.registry,
         "--sim-dir", str(net.state_dir / "tdx")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _node(report: dict[str, Any], address: bytes) -> dict[str, Any]:
    return next(n for n in report["nodes"] if n["address"] == checksum(address))


def _address(net: ProcessDevnet, name: str) -> bytes:
    return next(e.address for e in net.endpoints if e.name == name)


@pytest.mark.integration
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_service_registers_itself_and_no_enclave_key_reaches_the_disk(
    tmp_path: Path,
) -> None:
    net = ProcessDevnet(DevnetSettings(state_dir=tmp_path / "devnet", runners=1))
    async with net:
        # every role registered itself, and an auditor verifies each one from the chain
        before = _audit(net)
        assert before["ok"] is True
        for endpoint in net.endpoints:
            node = _node(before, endpoint.address)
            assert (node["role"], node["status"], node["verdict"]) == (
                endpoint.role, "active", "OK",
            ), endpoint.name  # fmt: skip
        assert {e.role for e in net.endpoints} == {
            "kms", "gateway", "orchestrator", "ingestor", "runner",
        }  # fmt: skip
        assert not (net.state_dir / "keys" / "gateway").exists()

        # a client connected before the restarts (it cached the gateway's address)
        async with net.client() as nox:
            old_gateway = (await nox.info()).address
            assert old_gateway == _address(net, "gateway")

            # a restarted KMS node and gateway: new enclave keys, registered again, verified
            old_kms = _address(net, "kms-1")
            await net.restart("kms-1")
            await net.restart("gateway", signal.SIGTERM)
            new_kms, new_gateway = _address(net, "kms-1"), _address(net, "gateway")
            assert new_kms != old_kms
            assert new_gateway != old_gateway
            after = _audit(net)
            assert after["ok"] is True
            assert (_node(after, new_kms)["role"], _node(after, new_kms)["verdict"]) == (
                "kms", "OK",
            )  # fmt: skip
            assert (_node(after, new_gateway)["role"], _node(after, new_gateway)["verdict"]) == (
                "gateway", "OK",
            )  # fmt: skip

            # the network keeps computing: transfers through the new gateway and KMS node,
            # decrypted by the client that knew the old gateway
            load = await TokenLoad.prepare(net, nox, pairs=1, transfers=2, seed=3)
            try:
                await load.send()
                await load.wait_stored(180)
                report = await load.verify()
            finally:
                load.close()
            assert report.ok, report.summary()
            assert report.tasks_stored == 2
            assert (await nox.info()).address == new_gateway
        enclaves = {bytes.fromhex(n["address"][2:]) for n in after["nodes"]}

    # 3 KMS nodes, gateway, orchestrator, ingestor, runner, and the two restarted ones
    assert len(enclaves) >= 9
    assert {old_kms, old_gateway, new_kms, new_gateway} <= enclaves
    assert enclave_secrets_in([tmp_path], enclaves) == []
