"""`noxctl audit registry` against anvil: table and JSON output, exit status 0 when every
active node verifies and 1 when one does not, 2 when the audit cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_support import tampered_node
from contracts_support import Net, make_net

from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.contracts import to_checksum
from nox.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def anvil_net(anvil: AnvilProcess, sim_tdx: SimulatedTdx) -> Net:
    return make_net(anvil.backend(), sim_tdx)


def _files(net: Net, tmp_path: Path) -> list[str]:
    root, collateral = tmp_path / "dev-root.der", tmp_path / "collateral.json"
    root.write_bytes(net.sim.root_der)
    collateral.write_text(net.sim.collateral().to_json())
    return ["--root", str(root), "--collateral", str(collateral)]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_and_exit_status(
    anvil: AnvilProcess, anvil_net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = anvil_net
    good = net.register_node(2)
    base = ["audit", "registry", "--rpc", anvil.url, "--registry", net.registry.address]
    at = ["--at", str(net.backend.now())]
    code, out, err = _run(capsys, *base, *_files(net, tmp_path), *at, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["chain_id"] == net.backend.chain_id
    assert [n["address"] for n in report["nodes"]] == [to_checksum(good.address)]
    assert report["nodes"][0]["verdict"] == "OK"
    assert report["nodes"][0]["tcb_status"] == "UpToDate"

    bad = tampered_node(net, 2)
    code, out, err = _run(capsys, *base, *_files(net, tmp_path), *at, "--json")
    assert code == 1
    nodes = {n["address"]: n for n in json.loads(out)["nodes"]}
    assert nodes[to_checksum(good.address)]["verdict"] == "OK"
    flagged = nodes[to_checksum(bad.address)]
    assert (flagged["verdict"], flagged["reason"], flagged["status"]) == (
        "FAIL",
        "SIGNATURE_INVALID",
        "active",
    )

    code, out, _ = _run(capsys, *base, *_files(net, tmp_path), *at)
    assert code == 1
    assert "FAIL SIGNATURE_INVALID" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("runner ")}
    assert lines[to_checksum(good.address)].rstrip().endswith("OK")

    # Intel's root alone (the default) does not trust the simulated deployment
    collateral = tmp_path / "collateral.json"
    code, out, _ = _run(capsys, *base, "--collateral", str(collateral), *at, "--json")
    assert code == 1
    assert {n["reason"] for n in json.loads(out)["nodes"]} == {"UNTRUSTED_ROOT"}


def test_unusable_input_exits_2(
    anvil: AnvilProcess,
    anvil_net: Net,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOX_CHAIN_RPC", raising=False)
    code, _, err = _run(
        capsys,
        "audit",
        "registry",
        "--rpc",
        anvil.url,
        "--registry",
        anvil_net.registry.address,
        "--collateral",
        str(tmp_path / "missing.json"),
    )
    assert code == 2
    assert "missing.json" in err
    code, _, err = _run(capsys, "audit", "registry", "--registry", anvil_net.registry.address)
    assert code == 2
    assert "--rpc" in err


def test_audit_task_from_the_gateway_store(
    anvil: AnvilProcess, anvil_net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from task_support import make_task

    from nox.gateway.store import HandleStore, StoreSettings

    net = anvil_net
    task = make_task(net)
    url = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    store = HandleStore.open(StoreSettings(url=url))
    task.store(store, task.evidence())
    store.close()
    base = ["audit", "task", "0x" + task.task_id.hex(), "--rpc", anvil.url]
    base += ["--registry", net.registry.address, *_files(net, tmp_path)]
    base += ["--at", str(net.backend.now())]

    code, out, err = _run(capsys, *base, "--store", url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["runners"] == [to_checksum(task.runner.address)]
    assert report["orchestrator"] == to_checksum(task.orchestrator.address)
    assert {s["what"] for s in report["signatures"]} == {
        "store request",
        "assignment #1",
        "result #1",
        "transaction #1",
    }

    code, out, _ = _run(capsys, *base, "--store", url)
    assert code == 0
    assert f"executed by runner {to_checksum(task.runner.address)}" in out
    assert out.rstrip().endswith("verdict: OK")

    # evidence of another task, given as a file
    forged = tmp_path / "evidence.bin"
    forged.write_bytes(task.evidence(task_id=bytes(32)))
    code, out, _ = _run(capsys, *base, "--evidence", str(forged))
    assert code == 1
    assert "FAIL] store request: task id — TASK_ID_MISMATCH" in out

    unknown = ["audit", "task", "0x" + "11" * 32, "--rpc", anvil.url]
    code, _, err = _run(capsys, *unknown, "--registry", net.registry.address, "--store", url)
    assert code == 2
    assert "TASK_NOT_FOUND" in err


def test_sim_dir_trusts_a_devnet_pki(
    anvil: AnvilProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--sim-dir` (a devnet's dev PKI folder) supplies the dev root and collateral."""
    sim = SimulatedTdx.create(tmp_path / "tdx")
    net = make_net(anvil.backend(), sim)
    node = net.register_node(3)
    argv = ["audit", "registry", "--rpc", anvil.url, "--registry", net.registry.address]
    code, out, err = _run(
        capsys, *argv, "--sim-dir", str(tmp_path / "tdx"), "--at", str(net.backend.now()), "--json"
    )
    assert code == 0, err
    (entry,) = json.loads(out)["nodes"]
    assert entry["address"] == to_checksum(node.address)
    assert entry["verdict"] == "OK"
    code, _, err = _run(capsys, *argv, "--sim-dir", str(tmp_path / "nothing-here"))
    assert code == 2
    assert "QUOTE_PROVIDER_FAILED" in err
