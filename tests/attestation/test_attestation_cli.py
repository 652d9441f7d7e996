"""`noxctl attest verify|parse` as an auditor runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SIM_NOW, Fixtures

from attestation.cli import main
from attestation.providers.simulated import SimulatedTdx


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["attest", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_json_reports_status_measurements_and_agreement(
    fx: Fixtures, capsys: pytest.CaptureFixture[str]
) -> None:
    case = fx.case("automata-tdx-v4-solana")
    code, out, _ = _run(
        capsys,
        "verify",
        str(fx.root / case["quote"]),
        "--collateral",
        str(fx.root / case["collateral"]),
        "--at",
        str(case["now"]),
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "OutOfDate"
    assert result["advisory_ids"] == case["advisory_ids"]
    f = case["fields"]
    assert result["mr_td"] == f["mr_td"]
    assert result["report_data"] == f["report_data"]
    for i in range(4):
        assert result[f"rtmr{i}"] == f[f"rt_mr{i}"]
    assert len(bytes.fromhex(result["workload_id"])) == 32
    assert result["verifiers"] == ["attestation", "dcap-qvl"]


def test_verify_text_report(fx: Fixtures, capsys: pytest.CaptureFixture[str]) -> None:
    case = fx.case("dcapqvl-tdx-v4")
    code, out, _ = _run(
        capsys,
        "verify",
        str(fx.root / case["quote"]),
        "--collateral",
        str(fx.root / case["collateral"]),
        "--at",
        str(case["now"]),
    )
    assert code == 0
    assert "quote verified: UpToDate" in out
    assert "attestation + dcap-qvl" in out
    assert case["fields"]["mr_td"] in out
    assert "workload_id" in out


@pytest.mark.parametrize(
    ("case_id", "reason"),
    [
        ("N20_outer_cert_type_5", "QUOTE_UNSUPPORTED"),
        ("T02_after_window", "COLLATERAL_EXPIRED"),
        ("N01_quote_sig_flipped", "SIGNATURE_INVALID"),
    ],
)
def test_verify_fails_with_the_reason(
    fx: Fixtures, capsys: pytest.CaptureFixture[str], case_id: str, reason: str
) -> None:
    case = fx.case(case_id)
    quote = case["file"] if case.get("file") else case["base_quote"]
    code, out, err = _run(
        capsys,
        "verify",
        str(fx.root / quote),
        "--collateral",
        str(fx.root / case["collateral"]),
        "--at",
        str(case["now"]),
        "--json",
    )
    assert code == 1
    assert json.loads(out)["reason"] == reason
    assert reason in err


def test_verify_simulated_quote_needs_the_dev_root(
    tmp_path: Path, sim: SimulatedTdx, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "q.bin").write_bytes(sim.quote(bytes(64)))
    (tmp_path / "c.json").write_text(sim.collateral().to_json())
    (tmp_path / "root.der").write_bytes(sim.root_der)
    args = [
        "verify",
        str(tmp_path / "q.bin"),
        "--collateral",
        str(tmp_path / "c.json"),
        "--at",
        str(SIM_NOW),
        "--json",
    ]
    code, out, _ = _run(capsys, *args)
    assert code == 1
    assert json.loads(out)["reason"] == "UNTRUSTED_ROOT"
    code, out, _ = _run(capsys, *args, "--root", str(tmp_path / "root.der"))
    assert code == 0
    assert json.loads(out)["status"] == "UpToDate"


def test_parse_prints_fields(fx: Fixtures, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "parse", str(fx.root / "dcap-qvl/tdx-quote.hex"))
    assert code == 0
    assert fx.case("dcapqvl-tdxhex-v4")["fields"]["mr_td"] in out


def test_parse_rejects_garbage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk").write_bytes(b"\x04\x00" + bytes(10))
    code, _, err = _run(capsys, "parse", str(tmp_path / "junk"))
    assert code == 1
    assert "QUOTE_TRUNCATED" in err


def test_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, "parse", str(tmp_path / "absent"))
    assert code == 2


def test_noxctl_exposes_the_attest_commands(
    fx: Fixtures, capsys: pytest.CaptureFixture[str]
) -> None:
    from nox.cli import main as noxctl

    assert noxctl(["attest", "parse", str(fx.root / "dcap-qvl/tdx_quote")]) == 0
    assert "mr_td" in capsys.readouterr().out
