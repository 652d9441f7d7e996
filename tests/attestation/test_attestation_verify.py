"""Verification against the real fixtures: dcap-qvl's verdict on every case, a specific error
for every negative case (N20 included, which dcap-qvl wrongly accepts)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest
from conftest import Fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation import exceptions as E
from attestation.collateral import Collateral
from attestation.policy import Policy, check_attributes
from attestation.roots import intel_sgx_root_ca
from attestation.verify import Verifier, verify_quote

# dcap-qvl's error text -> the error class we raise for the same reason.
DCAP_QVL_REASONS: dict[str, type[E.AttestationError]] = {
    "No matching TCB level found": E.TcbNotSupported,
    "Invalid MR service TD": E.ServiceTdNotAllowed,
    "Debug mode is enabled": E.DebugNotAllowed,
}


def _appraise(fx: Fixtures, quote: bytes, collateral_rel: str, now: int, root: bytes) -> tuple:
    """verify_quote plus the TD/enclave attribute checks dcap-qvl builds into `verify`."""
    v = verify_quote(quote, fx.collateral(collateral_rel), now=now, trusted_roots=[root])
    check_attributes(v.quote, Policy.any_tcb_status())
    return v.status, list(v.advisory_ids)


def test_every_indexed_case_gets_dcap_qvls_verdict(fx: Fixtures, intel_root: bytes) -> None:
    for case in fx.index:
        quote = fx.quote(case["quote"])
        if case["error"] is None:
            got = _appraise(fx, quote, case["collateral"], case["now"], intel_root)
            assert got == (case["status"], sorted(case["advisory_ids"])), case["id"]
        else:
            reason = next(k for k in DCAP_QVL_REASONS if k in case["error"])
            with pytest.raises(DCAP_QVL_REASONS[reason]):
                _appraise(fx, quote, case["collateral"], case["now"], intel_root)


def test_verdicts_hold_across_the_whole_collateral_window(fx: Fixtures, intel_root: bytes) -> None:
    for case in fx.index:
        if case["error"] is not None:
            continue
        start, end = case["window"]
        for now in (start, (start + end) // 2, end):
            got = _appraise(fx, fx.quote(case["quote"]), case["collateral"], now, intel_root)
            assert got[0] == case["status"], (case["id"], now)


# negative/index.json: (error class, field prefix, a word of dcap-qvl's error for the same reason)
NEGATIVE = {
    "N01_quote_sig_flipped": (
        E.SignatureInvalid,
        "quote_signature",
        "ISV enclave report signature",
    ),
    "N02_reportdata_zeroed": (
        E.SignatureInvalid,
        "quote_signature",
        "ISV enclave report signature",
    ),
    "N03_reportdata_bitflip": (
        E.SignatureInvalid,
        "quote_signature",
        "ISV enclave report signature",
    ),
    "N04_mrtd_flipped": (E.SignatureInvalid, "quote_signature", "ISV enclave report signature"),
    "N05_rtmr3_flipped": (E.SignatureInvalid, "quote_signature", "ISV enclave report signature"),
    "N06_td_attributes_debug": (
        E.SignatureInvalid,
        "quote_signature",
        "ISV enclave report signature",
    ),
    "N07_truncated_632": (E.QuoteTruncated, "signature_data", "Failed to decode quote"),
    "N08_truncated_1000": (E.QuoteTruncated, "signature_data", "Failed to decode quote"),
    "N09_truncated_4000": (E.QuoteTruncated, "signature_data", "Failed to decode quote"),
    "N10_qe_report_flipped": (E.SignatureInvalid, "qe_report_signature", "qe_report"),
    "N11_qe_report_isvsvn_changed": (E.SignatureInvalid, "qe_report_signature", "qe_report"),
    "N12_qe_report_sig_flipped": (E.SignatureInvalid, "qe_report_signature", "qe_report"),
    "N13_attest_key_flipped": (E.QeReportDataMismatch, "qe_report.report_data", "QE report hash"),
    "N14_qe_auth_data_flipped": (E.QeReportDataMismatch, "qe_report.report_data", "QE report hash"),
    "N15_qe_vendor_id_changed": (E.UnsupportedQuote, "header.qe_vendor_id", "QE vendor ID"),
    "N16_version_3": (E.QuoteFormatError, "header.tee_type", "Invalid TEE type"),
    "N17_tee_type_sgx": (E.UnsupportedQuote, "header.tee_type", "Failed to decode quote"),
    "N18_ak_type_p384": (E.UnsupportedQuote, "header.attestation_key_type", "attestation key type"),
    "N19_sig_data_len_huge": (E.QuoteTruncated, "signature_data.size", "Failed to decode quote"),
    "N20_outer_cert_type_5": (E.UnsupportedQuote, "signature_data.certification_data.type", None),
    "N21_inner_cert_type_4": (
        E.UnsupportedQuote,
        "qe_report_certification_data.certification_data.type",
        "cert format",
    ),
    "N22_pck_leaf_cert_corrupted": (
        E.CertificateChainError,
        "pck_certificate_chain[0]",
        "certificate chain",
    ),
    "C01_tcbinfo_status_edited": (E.SignatureInvalid, "tcb_info_signature", "tcb_info"),
    "C02_qeidentity_edited": (E.SignatureInvalid, "qe_identity_signature", "qe_identity"),
    "C03_tcbinfo_sig_flipped": (E.SignatureInvalid, "tcb_info_signature", "tcb_info"),
    "C04_pck_crl_from_processor_ca": (E.CrlError, "pck_crl", "RevocationStatus"),
    "C05_root_crl_corrupted": (E.CrlError, "root_ca_crl", "root CA CRL"),
    "C06_tcbinfo_chain_swapped": (
        E.CertificateChainError,
        "tcb_info_issuer_chain[0]",
        "CaUsedAsEndEntity",
    ),
    "T01_before_window": (
        E.CollateralExpired,
        "qe_identity.issueDate",
        "issue date is in the future",
    ),
    "T02_after_window": (E.CollateralExpired, "pck_crl", "CrlExpired"),
    "T03_far_future": (E.CollateralExpired, "", "CrlExpired"),
    "W01_wrong_fmspc_collateral": (E.CollateralMismatch, "tcb_info.fmspc", "Fmspc mismatch"),
    "W02_sgx_collateral_for_tdx": (E.CollateralMismatch, "", "QE Identity id"),
}
ACCEPTED = {"N23_trailing_garbage", "N24_padding_stripped"}


def test_the_tables_cover_every_negative_case(fx: Fixtures) -> None:
    assert {c["id"] for c in fx.negative} == set(NEGATIVE) | ACCEPTED


@pytest.mark.parametrize("case_id", sorted(NEGATIVE))
def test_negative_case_is_rejected_with_a_specific_error(
    fx: Fixtures, intel_root: bytes, case_id: str
) -> None:
    case = fx.case(case_id)
    cls, field, dq_word = NEGATIVE[case_id]
    if dq_word is None:  # N20: dcap-qvl 0.7.0 accepts it; Intel's QVL and we do not
        assert case["status"] == "UpToDate"
        assert "error" not in case
    else:
        assert dq_word in case["error"]
    with pytest.raises(cls) as info:
        verify_quote(
            fx.negative_quote(case),
            fx.collateral(case["collateral"]),
            now=case["now"],
            trusted_roots=[intel_root],
        )
    assert info.value.field.startswith(field), info.value
    assert info.value.reason.isupper()


@pytest.mark.parametrize("case_id", sorted(ACCEPTED))
def test_trailing_bytes_and_stripped_padding_are_accepted(
    fx: Fixtures, intel_root: bytes, case_id: str
) -> None:
    case = fx.case(case_id)
    v = verify_quote(
        fx.negative_quote(case),
        fx.collateral(case["collateral"]),
        now=case["now"],
        trusted_roots=[intel_root],
    )
    assert (v.status, list(v.advisory_ids)) == (case["status"], case["advisory_ids"])
    assert len(v.quote.raw) == 4936


def test_real_quotes_are_rejected_without_intels_root(fx: Fixtures, sim: object) -> None:
    from attestation.providers.simulated import SimulatedTdx

    assert isinstance(sim, SimulatedTdx)
    case = fx.case("dcapqvl-tdx-v4")
    with pytest.raises(E.UntrustedRoot):
        verify_quote(
            fx.quote(case["quote"]),
            fx.collateral(case["collateral"]),
            now=case["now"],
            trusted_roots=[sim.root_der],
        )


def test_cached_verifier_gives_the_uncached_verdicts(fx: Fixtures, intel_root: bytes) -> None:
    verifier = Verifier([intel_root])
    cases = [c for c in fx.index if c["error"] is None] * 2
    for case in cases:
        quote, coll = fx.quote(case["quote"]), fx.collateral(case["collateral"])
        warm = verifier.verify(quote, coll, now=case["now"])
        cold = verify_quote(quote, coll, now=case["now"], trusted_roots=[intel_root])
        assert (warm.status, warm.advisory_ids) == (cold.status, cold.advisory_ids)


def test_cached_verifier_still_checks_time_and_quote(fx: Fixtures, intel_root: bytes) -> None:
    verifier = Verifier([intel_root])
    case = fx.case("dcapqvl-tdx-v4")
    quote, coll = fx.quote(case["quote"]), fx.collateral(case["collateral"])
    verifier.verify(quote, coll, now=case["now"])
    with pytest.raises(E.CollateralExpired):
        verifier.verify(quote, coll, now=case["window"][1] + 1)
    tampered = bytearray(quote)
    tampered[568] ^= 1  # REPORTDATA
    with pytest.raises(E.SignatureInvalid):
        verifier.verify(bytes(tampered), coll, now=case["now"])
    bad_qe = bytearray(quote)
    bad_qe[1154] ^= 1  # QE report signature
    with pytest.raises(E.SignatureInvalid) as info:
        verifier.verify(bytes(bad_qe), coll, now=case["now"])
    assert info.value.field == "qe_report_signature"


def test_verified_quote_reports_collateral_dates(fx: Fixtures, intel_root: bytes) -> None:
    case = fx.case("dcapqvl-tdx-v4")
    v = verify_quote(
        fx.quote(case["quote"]),
        fx.collateral(case["collateral"]),
        now=case["now"],
        trusted_roots=[intel_root],
    )
    assert v.collateral_expires_at == case["window"][1]
    assert v.collateral_issued_at <= case["window"][0]
    assert v.fmspc.hex().upper() == case["fmspc"]
    assert v.pck_ca == case["fields"]["ca"]


COLLATERAL_FIELDS = (
    "pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
    "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature",
)  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(COLLATERAL_FIELDS), where=st.integers(0, 10**6),
       value=st.integers(0, 255))  # fmt: skip
def test_mutated_collateral_raises_only_typed_errors(
    tdx_fixtures: Path, field: str, where: int, value: int
) -> None:
    case = json.loads((tdx_fixtures / "index.json").read_text())[0]
    coll = Collateral.from_json((tdx_fixtures / case["collateral"]).read_text())
    quote = (tdx_fixtures / case["quote"]).read_bytes()
    original = getattr(coll, field)
    if isinstance(original, bytes):
        data = bytearray(original)
        data[where % len(data)] = value
        mutated: object = bytes(data)
    else:
        pos = where % len(original)
        mutated = original[:pos] + chr(value % 128) + original[pos + 1 :]
    changed = dataclasses.replace(coll, **{field: mutated})
    with contextlib.suppress(E.AttestationError):
        verify_quote(quote, changed, now=case["now"], trusted_roots=[intel_sgx_root_ca()])
