"""Simulated TDX: real v4 quotes through a per-deployment dev PKI, verified by the same code
path, accepted only where that dev root is trusted."""

from __future__ import annotations

from pathlib import Path

import dcap_qvl
import pytest
from conftest import SIM_NOW

from attestation import exceptions as E
from attestation.measurements import Measurements, workload_id
from attestation.pck import parse_sgx_extension
from attestation.providers.simulated import DEV_FMSPC, SimulatedTdx
from attestation.quote import parse_quote
from attestation.verify import verify_quote

REPORT_DATA = bytes(range(64))


def test_simulated_quote_verifies_with_the_dev_root(sim: SimulatedTdx) -> None:
    v = verify_quote(
        sim.quote(REPORT_DATA), sim.collateral(), now=SIM_NOW, trusted_roots=[sim.root_der]
    )
    assert v.status == "UpToDate"
    assert v.advisory_ids == ()
    assert v.quote.report_data == REPORT_DATA
    assert v.fmspc == DEV_FMSPC


def test_simulated_quote_is_rejected_by_a_verifier_trusting_only_intel(
    sim: SimulatedTdx, intel_root: bytes
) -> None:
    with pytest.raises(E.UntrustedRoot):
        verify_quote(
            sim.quote(REPORT_DATA), sim.collateral(), now=SIM_NOW, trusted_roots=[intel_root]
        )
    # ...and accepted once the deployment configures its dev root next to Intel's.
    v = verify_quote(
        sim.quote(REPORT_DATA),
        sim.collateral(),
        now=SIM_NOW,
        trusted_roots=[intel_root, sim.root_der],
    )
    assert v.status == "UpToDate"


def test_dcap_qvl_agrees_on_simulated_quotes(sim: SimulatedTdx, intel_root: bytes) -> None:
    """The format is real: dcap-qvl accepts it under the dev root and rejects it under Intel's."""
    coll = dcap_qvl.QuoteCollateralV3.from_json(sim.collateral().to_json())
    quote = sim.quote(REPORT_DATA)
    report = dcap_qvl.verify_with_root_ca(quote, coll, sim.root_der, SIM_NOW)
    assert report.status == "UpToDate"
    with pytest.raises(ValueError, match="CRL"):
        dcap_qvl.verify(quote, coll, SIM_NOW)


def test_another_deployment_does_not_verify_this_ones_quotes(sim: SimulatedTdx) -> None:
    other = SimulatedTdx.generate()
    with pytest.raises(E.UntrustedRoot):
        verify_quote(
            sim.quote(REPORT_DATA),
            other.collateral(now=SIM_NOW),
            now=SIM_NOW,
            trusted_roots=[other.root_der],
        )


def test_pck_certificate_carries_the_sgx_extension(sim: SimulatedTdx) -> None:
    from cryptography import x509

    ext = sim.pck.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.2.840.113741.1.13.1"))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    parsed = parse_sgx_extension(ext.value.value)
    assert parsed.fmspc == DEV_FMSPC
    assert parsed.pceid == bytes(2)
    assert len(parsed.cpusvn_components) == 16
    assert parsed.cpusvn == bytes(parsed.cpusvn_components)
    pem = dcap_qvl.parse_pck_extension_from_pem(parse_quote(sim.quote(REPORT_DATA)).pck_chain_pem)
    assert (pem.fmspc, pem.pce_svn, pem.cpu_svn) == (parsed.fmspc, parsed.pcesvn, parsed.cpusvn)


def test_measurements_end_up_in_the_quote(sim: SimulatedTdx) -> None:
    m = Measurements(
        mr_td=b"\x11" * 48, rtmr0=b"\x22" * 48, rtmr3=b"\x33" * 48, mr_config_id=b"\x44" * 48
    )
    td = parse_quote(sim.quote(REPORT_DATA, measurements=m)).td_report
    assert (td.mr_td, td.rtmr0, td.rtmr3, td.mr_config_id) == (
        m.mr_td,
        m.rtmr0,
        m.rtmr3,
        m.mr_config_id,
    )
    assert workload_id(td) == m.workload_id


def test_revoked_pck_certificate_is_rejected(sim: SimulatedTdx) -> None:
    with pytest.raises(E.CertificateRevoked) as info:
        verify_quote(
            sim.quote(REPORT_DATA),
            sim.collateral(revoke_pck=True),
            now=SIM_NOW,
            trusted_roots=[sim.root_der],
        )
    assert info.value.field == "pck_certificate_chain[0]"


def test_collateral_window_is_enforced(sim: SimulatedTdx) -> None:
    coll = sim.collateral()
    with pytest.raises(E.CollateralExpired):
        verify_quote(
            sim.quote(REPORT_DATA), coll, now=SIM_NOW + 31 * 86400, trusted_roots=[sim.root_der]
        )


def test_create_and_load_round_trip_with_encrypted_keys(tmp_path: Path) -> None:
    created = SimulatedTdx.create(tmp_path / "pki", passphrase=b"dev passphrase")
    assert b"ENCRYPTED" in (tmp_path / "pki" / "root.key.pem").read_bytes()
    assert (tmp_path / "pki" / "root.key.pem").stat().st_mode & 0o077 == 0
    loaded = SimulatedTdx.load(tmp_path / "pki", passphrase=b"dev passphrase")
    assert loaded.root_der == created.root_der
    v = verify_quote(
        loaded.quote(REPORT_DATA),
        created.collateral(now=SIM_NOW),
        now=SIM_NOW,
        trusted_roots=[created.root_der],
    )
    assert v.status == "UpToDate"
    with pytest.raises(E.ProviderError):
        SimulatedTdx.load(tmp_path / "pki", passphrase=b"wrong")
    with pytest.raises(E.ProviderError):
        SimulatedTdx.create(tmp_path / "pki")


def test_report_data_must_be_64_bytes(sim: SimulatedTdx) -> None:
    with pytest.raises(E.ProviderError):
        sim.quote(b"short")


def test_secret_keys_are_not_in_the_repr(sim: SimulatedTdx) -> None:
    assert "keys" not in repr(sim)
    assert "PRIVATE" not in repr(sim)
