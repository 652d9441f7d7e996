"""`noxctl runner register` against an anvil devnet with the simulated TDX provider; the
runner then shows in `noxctl registry list` (state shared across CLI invocations through
JSON-RPC: an embedded EVM lives in one process only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD
from nox.chain.anvil import AnvilProcess
from nox.cli import main

pytestmark = pytest.mark.integration


def _noxctl(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_runner_register_then_registry_list(
    anvil: AnvilProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner_key, operator_key = tmp_path / "owner.key", tmp_path / "operator.key"
    owner_key.write_text(anvil.private_keys[0])
    operator_key.write_text(anvil.private_keys[1])
    deployment = tmp_path / "deployment.json"
    rpc = ["--rpc", anvil.url]
    _noxctl(capsys, "chain", "deploy", *rpc, "--key-file", str(owner_key), "--out", str(deployment))
    chain = [*rpc, "--deployment", str(deployment)]
    workload = "0x" + Measurements(mr_td=DEFAULT_MR_TD).workload_id.hex()
    _noxctl(
        capsys,
        "governance",
        "allow-workload",
        *chain,
        "--key-file",
        str(owner_key),
        "--role",
        "runner",
        "--workload-id",
        workload,
    )

    enclave_key = tmp_path / "enclave.key"
    registered = _noxctl(
        capsys,
        "runner",
        "register",
        *chain,
        "--key-file",
        str(operator_key),
        "--enclave-key-file",
        str(enclave_key),
        "--endpoint",
        "https://runner-7.example:7443",
        "--sim-dir",
        str(tmp_path / "dev-tdx"),
    )
    assert isinstance(registered, dict)
    assert enclave_key.stat().st_mode & 0o777 == 0o600
    assert registered["role"] == "runner"
    assert registered["workload_id"] == workload
    assert registered["endpoint"] == "https://runner-7.example:7443"

    listed = _noxctl(capsys, "registry", "list", *chain, "--role", "runner")
    assert isinstance(listed, list)
    assert [n["address"] for n in listed] == [registered["address"]]
    shown = _noxctl(capsys, "registry", "show", registered["address"], *chain)
    assert isinstance(shown, dict)
    assert shown["active"] is True

    _noxctl(
        capsys,
        "governance",
        "revoke-enclave",
        registered["address"],
        *chain,
        "--key-file",
        str(owner_key),
    )
    assert _noxctl(capsys, "registry", "list", *chain) == []

    gov = [*chain, "--key-file", str(owner_key)]
    share = "0x02" + "11" * 32
    keys = _noxctl(
        capsys,
        "governance",
        "set-kms-keys",
        *gov,
        "--public-key",
        "0x03" + "22" * 32,
        "--share",
        share,
        "--share",
        share,
        "--threshold",
        "2",
    )
    assert isinstance(keys, dict)
    assert (keys["threshold"], keys["public_shares"]) == (2, [share, share])
    age = _noxctl(capsys, "governance", "set-max-attestation-age", *gov, "3600")
    assert age == {"max_attestation_age": 3600}
    _noxctl(
        capsys,
        "governance",
        "disallow-workload",
        *gov,
        "--role",
        "runner",
        "--workload-id",
        workload,
    )
    code = main(
        ["governance", "set-max-attestation-age", *chain, "--key-file", str(operator_key), "60"]
    )
    assert code == 1
    assert "NotOwner" in capsys.readouterr().err


def test_register_with_non_allowlisted_workload_reports_the_contract_error(
    anvil: AnvilProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "owner.key"
    key.write_text(anvil.private_keys[0])
    deployment = tmp_path / "deployment.json"
    _noxctl(
        capsys,
        "chain",
        "deploy",
        "--rpc",
        anvil.url,
        "--key-file",
        str(key),
        "--out",
        str(deployment),
    )
    code = main(
        [
            "runner",
            "register",
            "--rpc",
            anvil.url,
            "--deployment",
            str(deployment),
            "--key-file",
            str(key),
            "--enclave-key-file",
            str(tmp_path / "e.key"),
            "--endpoint",
            "https://x.example",
            "--sim-dir",
            str(tmp_path / "sim"),
        ]
    )
    _out, err = capsys.readouterr()
    assert code == 1
    assert "WorkloadNotAllowed" in err
