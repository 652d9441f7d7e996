"""Policy knobs and the REPORTDATA binding of DESIGN §3."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import SIM_NOW, Fixtures
from eth_abi import decode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation import exceptions as E
from attestation.binding import (
    Role,
    check_binding,
    decode_ext_data,
    ext_data,
    report_data_for,
    split_report_data,
)
from attestation.measurements import DEFAULT_TD_ATTRIBUTES, Measurements, workload_id
from attestation.policy import Policy, check_policy
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from attestation.verify import VerifiedQuote, verify_quote

ENCLAVE = bytes.fromhex("11" * 20)
OPERATOR = bytes.fromhex("22" * 20)
REGISTRY = bytes.fromhex("33" * 20)


def _ext() -> bytes:
    return ext_data(Role.RUNNER, OPERATOR, 31337, REGISTRY, "https://runner-1.example:7443")


def _verified(
    sim: SimulatedTdx, m: Measurements | None = None, report_data: bytes | None = None
) -> VerifiedQuote:
    rd = report_data or report_data_for(ENCLAVE, _ext())
    return verify_quote(
        sim.quote(rd, measurements=m), sim.collateral(), now=SIM_NOW, trusted_roots=[sim.root_der]
    )


def _attrs(bits: int) -> bytes:
    return (int.from_bytes(DEFAULT_TD_ATTRIBUTES, "little") | bits).to_bytes(8, "little")


# --- binding -------------------------------------------------------------------------------


def test_ext_data_is_the_abi_encoding_of_the_registration_tuple() -> None:
    data = _ext()
    role, operator, chain_id, registry, endpoint = decode(
        ["uint8", "address", "uint256", "address", "string"], data
    )
    assert (role, operator, chain_id, registry) == (2, "0x" + "22" * 20, 31337, "0x" + "33" * 20)
    assert endpoint == "https://runner-1.example:7443"
    assert decode_ext_data(data).endpoint == endpoint


def test_report_data_layout() -> None:
    rd = report_data_for(ENCLAVE, _ext())
    assert len(rd) == 64
    assert rd[:20] == ENCLAVE
    assert rd[20:52] == keccak(_ext())
    assert rd[52:] == bytes(12)
    parts = split_report_data(rd)
    assert parts.enclave_address == ENCLAVE
    assert parts.well_formed


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=20, max_size=20),
    st.integers(0, 255),
    st.integers(0, 2**256 - 1),
    st.text(max_size=80),
)
def test_binding_round_trips_and_rejects_any_other_registration(
    address: bytes, role: int, chain_id: int, endpoint: str
) -> None:
    ext = ext_data(role, OPERATOR, chain_id, REGISTRY, endpoint)
    rd = report_data_for(address, ext)
    check_binding(rd, address, ext)
    other = ext_data(role, OPERATOR, chain_id, REGISTRY, endpoint + "x")
    with pytest.raises(E.ReportDataMismatch):
        check_binding(rd, address, other)
    with pytest.raises(E.ReportDataMismatch):
        check_binding(rd, bytes(20) if any(address) else b"\x01" * 20, ext)


def test_binding_rejects_nonzero_padding() -> None:
    rd = bytearray(report_data_for(ENCLAVE, _ext()))
    rd[63] = 1
    with pytest.raises(E.ReportDataMismatch) as info:
        check_binding(bytes(rd), ENCLAVE, _ext())
    assert info.value.field == "report_data.padding"


def test_ext_data_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError, match="20-byte address"):
        ext_data(1, b"\x00" * 19, 1, REGISTRY, "x")


# --- policy ----------------------------------------------------------------------------------


def test_default_policy_accepts_a_production_like_up_to_date_td(sim: SimulatedTdx) -> None:
    v = _verified(sim)
    check_policy(v, Policy(), now=SIM_NOW, expected_report_data=report_data_for(ENCLAVE, _ext()))


@pytest.mark.parametrize(
    ("bits", "error", "switch"),
    [
        (1 << 0, E.DebugNotAllowed, "dangerous_allow_debug"),
        (1 << 29, E.TdAttributesNotAllowed, "dangerous_allow_migratable"),
        (1 << 17, E.ServiceTdNotAllowed, "dangerous_allow_service_td"),
    ],
)
def test_unsafe_td_attributes_are_rejected_unless_dangerously_allowed(
    sim: SimulatedTdx, bits: int, error: type[E.PolicyViolation], switch: str
) -> None:
    v = _verified(sim, Measurements(mr_td=DEFAULT_MR_TD, td_attributes=_attrs(bits)))
    with pytest.raises(error):
        check_policy(v, Policy(), now=SIM_NOW)
    check_policy(v, Policy(**{switch: True}), now=SIM_NOW)


def test_reserved_attribute_bits_and_missing_sept_ve_disable_are_rejected(
    sim: SimulatedTdx,
) -> None:
    v = _verified(sim, Measurements(mr_td=DEFAULT_MR_TD, td_attributes=_attrs(1 << 5)))
    with pytest.raises(E.TdAttributesNotAllowed):
        check_policy(v, Policy(dangerous_allow_debug=True), now=SIM_NOW)
    v = _verified(sim, Measurements(mr_td=DEFAULT_MR_TD, td_attributes=bytes(8)))
    with pytest.raises(E.TdAttributesNotAllowed):
        check_policy(v, Policy(), now=SIM_NOW)
    check_policy(v, Policy(dangerous_allow_sept_ve=True), now=SIM_NOW)


def test_nonzero_mrservicetd_is_rejected_like_dcap_qvl(fx: Fixtures, intel_root: bytes) -> None:
    case = fx.case("automata-alibaba-v5")
    assert "MR service TD" in case["error"]
    v = verify_quote(
        fx.quote(case["quote"]),
        fx.collateral(case["collateral"]),
        now=case["now"],
        trusted_roots=[intel_root],
    )
    with pytest.raises(E.ServiceTdNotAllowed) as info:
        check_policy(v, Policy.any_tcb_status(), now=case["now"])
    assert info.value.field == "td_report.mr_service_td"
    check_policy(v, Policy.any_tcb_status(dangerous_allow_service_td=True), now=case["now"])


def test_debug_sgx_enclave_is_rejected(fx: Fixtures, intel_root: bytes) -> None:
    case = fx.case("automata-sgx-v3-debug")
    v = verify_quote(
        fx.quote(case["quote"]),
        fx.collateral(case["collateral"]),
        now=case["now"],
        trusted_roots=[intel_root],
    )
    with pytest.raises(E.DebugNotAllowed):
        check_policy(v, Policy.any_tcb_status(), now=case["now"])


def test_tcb_status_and_advisories(fx: Fixtures, intel_root: bytes) -> None:
    case = fx.case("automata-tdx-v4-solana")
    v = verify_quote(
        fx.quote(case["quote"]),
        fx.collateral(case["collateral"]),
        now=case["now"],
        trusted_roots=[intel_root],
    )
    assert v.status == "OutOfDate"
    with pytest.raises(E.TcbStatusNotAllowed) as info:
        check_policy(v, Policy(), now=case["now"])
    assert info.value.field == "tcb_status"
    lenient = Policy(allowed_statuses=frozenset({"UpToDate", "OutOfDate"}))
    check_policy(v, lenient, now=case["now"])
    with pytest.raises(E.TcbStatusNotAllowed) as info:
        check_policy(
            v,
            dataclasses.replace(lenient, rejected_advisories=frozenset({"INTEL-SA-00982"})),
            now=case["now"],
        )
    assert info.value.field == "advisory_ids"
    with pytest.raises(E.TcbStatusNotAllowed):
        check_policy(
            v,
            dataclasses.replace(lenient, allowed_advisories=frozenset({"INTEL-SA-00960"})),
            now=case["now"],
        )


def test_collateral_freshness_limit(sim: SimulatedTdx) -> None:
    v = _verified(sim)
    age = SIM_NOW - v.collateral_issued_at
    check_policy(v, Policy(max_collateral_age=age), now=SIM_NOW)
    with pytest.raises(E.CollateralTooOld):
        check_policy(v, Policy(max_collateral_age=age - 1), now=SIM_NOW)


def test_expected_workload_ids(sim: SimulatedTdx) -> None:
    m = Measurements(mr_td=b"\x42" * 48, rtmr1=b"\x07" * 48)
    v = _verified(sim, m)
    check_policy(v, Policy(allowed_workload_ids=frozenset({m.workload_id})), now=SIM_NOW)
    other = Measurements(mr_td=b"\x42" * 48, rtmr1=b"\x08" * 48)
    with pytest.raises(E.MeasurementMismatch):
        check_policy(v, Policy(allowed_workload_ids=frozenset({other.workload_id})), now=SIM_NOW)
    assert workload_id(v.quote.td_report) == m.workload_id


def test_workload_id_is_keccak_of_the_measurement_fields(fx: Fixtures) -> None:
    from attestation.quote import parse_quote

    td = parse_quote(fx.quote("dcap-qvl/tdx_quote")).td_report
    expected = keccak(
        td.mr_td
        + td.rtmr0
        + td.rtmr1
        + td.rtmr2
        + td.rtmr3
        + td.mr_config_id
        + td.xfam
        + td.td_attributes
    )
    assert workload_id(td) == expected
    assert len(expected) == 32


def test_expected_report_data(sim: SimulatedTdx) -> None:
    v = _verified(sim)
    with pytest.raises(E.ReportDataMismatch):
        check_policy(v, Policy(), now=SIM_NOW, expected_report_data=bytes(64))
