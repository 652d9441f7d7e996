"""Parsing: every field of every real quote, strict structure checks, and a fuzz test that
parse never raises anything but the typed error."""

from __future__ import annotations

import hashlib

import pytest
from conftest import Fixtures
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attestation.exceptions import QuoteFormatError, QuoteTruncated, UnsupportedQuote
from attestation.quote import EnclaveReport, TdReport, parse_quote, read_quote_bytes

# index.json field names -> attribute names of our structures
RENAMED = {"rt_mr0": "rtmr0", "rt_mr1": "rtmr1", "rt_mr2": "rtmr2", "rt_mr3": "rtmr3"}
BODY_TYPES = {"PyTdReport10": 2, "PyTdReport15": 3, "PyTdReport15Ex": 4, "PySgxEnclaveReport": 1}


@pytest.fixture(scope="module")
def real_quotes(fx: Fixtures) -> list[bytes]:
    return [fx.quote(c["quote"]) for c in fx.index]


def test_every_fixture_quote_parses_to_the_indexed_fields(fx: Fixtures) -> None:
    for case in fx.index:
        data = fx.quote(case["quote"])
        assert hashlib.sha256(data).hexdigest() == case["quote_sha256"], case["id"]
        q = parse_quote(data)
        assert len(q.raw) == case["used_len"], case["id"]
        assert q.body_type == BODY_TYPES[case["body"]], case["id"]
        f = case["fields"]
        h = q.header
        assert (h.version, h.attestation_key_type, h.tee_type) == (
            f["version"],
            f["ak_type"],
            int(f["tee_type"], 16),
        )
        assert (h.qe_svn, h.pce_svn) == (f["qe_svn"], f["pce_svn"])
        assert h.qe_vendor_id.hex() == f["qe_vendor_id"]
        assert h.user_data.hex() == f["user_data"]
        checked = 0
        for key, value in f.items():
            attr = RENAMED.get(key, key)
            got = getattr(q.body, attr, None)
            if isinstance(got, bytes):
                assert got.hex() == value, (case["id"], key)
                checked += 1
        expected_kind = EnclaveReport if case["body"] == "PySgxEnclaveReport" else TdReport
        assert isinstance(q.body, expected_kind)
        assert checked >= (5 if expected_kind is EnclaveReport else 15), case["id"]


def test_signed_length_is_header_plus_body(fx: Fixtures) -> None:
    sizes = {1: 384, 2: 584, 3: 648, 4: 885}
    for case in fx.index:
        q = parse_quote(fx.quote(case["quote"]))
        extra = 6 if q.header.version == 5 else 0
        assert q.signed_length == 48 + extra + sizes[q.body_type], case["id"]


def test_td15ex_extra_fields_are_exposed(fx: Fixtures) -> None:
    q = parse_quote(fx.quote("dcap-qvl/tdx_quote_td15ex"))
    extra = q.td_report.extra_fields
    assert set(extra) >= {"vmid", "td_id", "init_tee_fmspc", "cur_service_td_attributes"}
    assert len(q.td_report.raw) == 885


def test_trailing_padding_is_ignored_and_not_part_of_the_quote(fx: Fixtures) -> None:
    padded = fx.quote("dcap-qvl/tdx_quote")
    q = parse_quote(padded)
    assert len(padded) == 5006
    assert len(q.raw) == 4936
    assert parse_quote(padded + b"\xff" * 1024).raw == q.raw
    assert parse_quote(padded[:4936]).raw == q.raw


def test_hex_quote_files_are_decoded(fx: Fixtures) -> None:
    raw = (fx.root / "dcap-qvl/tdx-quote.hex").read_bytes()
    assert raw.startswith(b"0x")
    assert parse_quote(read_quote_bytes(raw)).header.version == 4
    binary = fx.quote("dcap-qvl/tdx_quote")
    assert read_quote_bytes(binary) == binary


# Negative quote files: (error class, field) of the structural check that rejects them.
PARSE_REJECTS = {
    "N07_truncated_632": (QuoteTruncated, "signature_data.size"),
    "N08_truncated_1000": (QuoteTruncated, "signature_data.size"),
    "N09_truncated_4000": (QuoteTruncated, "signature_data.size"),
    "N15_qe_vendor_id_changed": (UnsupportedQuote, "header.qe_vendor_id"),
    "N16_version_3": (QuoteFormatError, "header.tee_type"),
    "N17_tee_type_sgx": (UnsupportedQuote, "header.tee_type"),
    "N18_ak_type_p384": (UnsupportedQuote, "header.attestation_key_type"),
    "N19_sig_data_len_huge": (QuoteTruncated, "signature_data.size"),
    "N20_outer_cert_type_5": (UnsupportedQuote, "signature_data.certification_data.type"),
    "N21_inner_cert_type_4": (
        UnsupportedQuote,
        "qe_report_certification_data.certification_data.type",
    ),
}


@pytest.mark.parametrize("case_id", sorted(PARSE_REJECTS))
def test_structurally_bad_quotes_are_rejected_naming_the_field(fx: Fixtures, case_id: str) -> None:
    case = fx.case(case_id)
    cls, field = PARSE_REJECTS[case_id]
    with pytest.raises(cls) as info:
        parse_quote(fx.negative_quote(case))
    assert info.value.field == field


def test_other_negative_quotes_parse(fx: Fixtures) -> None:
    """Signature / content defects are for verification, not parsing, to catch."""
    cases = [
        case
        for case in fx.negative
        if (case.get("file") or "").endswith(".bin") and case["id"] not in PARSE_REJECTS
    ]
    assert len(cases) >= 5, "the fixture index lists fewer content-defect quotes than expected"
    for case in cases:
        quote = parse_quote(fx.negative_quote(case))
        assert isinstance(quote.body, TdReport | EnclaveReport), case["id"]
        assert len(quote.body.report_data) == 64, case["id"]


def _v5_with_body(fx: Fixtures, body_type: int | None = None, size: int | None = None) -> bytes:
    data = bytearray(fx.quote("dcap-qvl/tdx_quote_outdated"))
    if body_type is not None:
        data[48:50] = body_type.to_bytes(2, "little")
    if size is not None:
        data[50:54] = size.to_bytes(4, "little")
    return bytes(data)


def test_v5_body_type_and_size_must_agree(fx: Fixtures) -> None:
    with pytest.raises(QuoteFormatError) as info:
        parse_quote(_v5_with_body(fx, size=584))
    assert info.value.field == "body.size"
    with pytest.raises(QuoteFormatError) as info:
        parse_quote(_v5_with_body(fx, body_type=1, size=384))
    assert info.value.field == "body.type"
    with pytest.raises(UnsupportedQuote) as info:
        parse_quote(_v5_with_body(fx, body_type=9))
    assert info.value.field == "body.type"


def test_sizes_inside_signature_data_must_fit_exactly(fx: Fixtures) -> None:
    data = bytearray(fx.quote("dcap-qvl/tdx_quote")[:4936])
    data[766:770] = (int.from_bytes(data[766:770], "little") - 1).to_bytes(4, "little")
    with pytest.raises(QuoteFormatError) as info:
        parse_quote(bytes(data))
    assert info.value.field, "the refusal names the field that does not fit"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x04\x00\x02\x00\x81\x00\x00\x00" + bytes(40))
def test_parse_raises_only_typed_errors_on_arbitrary_bytes(data: bytes) -> None:
    # Anything but a QuoteFormatError propagates and fails the test; random bytes this short
    # are never a whole quote, so every example must be refused, typed.
    with pytest.raises(QuoteFormatError):
        parse_quote(data)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(min_value=0, max_value=12),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_parse_raises_only_typed_errors_on_mutated_real_quotes(
    real_quotes: list[bytes], which: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(real_quotes[which % len(real_quotes)])
    # Bias half of the edits into the structural fields (header, v5 body type, sizes).
    for pos, value in edits:
        where = pos % len(data) if pos % 2 else (pos // 2) % 64 + (pos % 3) * 600
        data[where % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        q = parse_quote(bytes(data))
    except QuoteFormatError:
        return
    assert len(q.raw) <= len(data)
    assert q.signed_length <= len(q.raw)
