"""TCB level selection and status convergence on synthetic collateral (notes §3 steps 13-17)."""

from __future__ import annotations

import pytest

from attestation.collateral import IsvLevel, QeIdentity, TcbInfo, TcbLevel, TdxModuleIdentity
from attestation.exceptions import TcbNotSupported, TdxModuleMismatch
from attestation.quote import BODY_TD15, TdReport
from attestation.tcb import (
    converge_out_of_date,
    evaluate,
    module_identity,
    select_platform_levels,
)

SGX = (5,) * 16


def _level(
    status: str,
    tdx: tuple[int, ...],
    sgx: tuple[int, ...] = SGX,
    pce: int = 10,
    adv: tuple[str, ...] = (),
) -> TcbLevel:
    return TcbLevel(sgx, pce, tdx, 0, status, adv)


def _tdx(*head: int) -> tuple[int, ...]:
    return tuple(head) + (0,) * (16 - len(head))


def _info(levels: list[TcbLevel], module_levels: list[IsvLevel]) -> TcbInfo:
    ident = TdxModuleIdentity("TDX_01", bytes(48), 0, 2**64 - 1, tuple(module_levels))
    base = TdxModuleIdentity("", bytes(48), 0, 2**64 - 1, ())
    return TcbInfo("TDX", 3, 0, 2**40, bytes(6), bytes(2), 1, tuple(levels), base, (ident,))


def _qe(levels: list[IsvLevel]) -> QeIdentity:
    return QeIdentity("TD_QE", 2, 0, 2**40, 0, 0, bytes(16), bytes(16), bytes(32), 2, tuple(levels))


def _td(
    svn: tuple[int, ...], svn2: tuple[int, ...] | None = None, signer: bytes = bytes(48)
) -> TdReport:
    raw = bytearray(648)
    raw[0:16] = bytes(svn)
    raw[64:112] = signer
    raw[584:600] = bytes(svn2 if svn2 is not None else svn)
    return TdReport.parse(bytes(raw), BODY_TD15)


def _isv(svn: int, status: str, adv: tuple[str, ...] = ()) -> IsvLevel:
    return IsvLevel(svn, 0, status, adv)


@pytest.mark.parametrize(
    ("status", "other", "expected"),
    [
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("UpToDate", "Revoked", "Revoked"),
        ("ConfigurationNeeded", "UpToDate", "ConfigurationNeeded"),
    ],
)
def test_status_convergence(status: str, other: str, expected: str) -> None:
    assert converge_out_of_date(status, other) == expected


def test_highest_reachable_level_wins_whatever_the_listing_order() -> None:
    low = _level("OutOfDate", _tdx(0, 0, 1))
    high = _level("UpToDate", _tdx(0, 0, 3))
    info = _info([low, high], [])
    assert select_platform_levels(info, SGX, 10, bytes(_tdx(0, 0, 3)))[1] is high
    assert select_platform_levels(info, SGX, 10, bytes(_tdx(0, 0, 2)))[1] is low
    with pytest.raises(TcbNotSupported):
        select_platform_levels(info, SGX, 10, bytes(_tdx(0, 0, 0)))
    with pytest.raises(TcbNotSupported):  # PCESVN comes from the PCK certificate
        select_platform_levels(info, SGX, 9, bytes(_tdx(0, 0, 3)))


def test_module_bytes_are_skipped_when_the_module_version_is_set() -> None:
    level = _level("UpToDate", _tdx(9, 9, 3))
    info = _info([level], [])
    assert select_platform_levels(info, SGX, 10, bytes(_tdx(1, 1, 3)))[1] is level
    with pytest.raises(TcbNotSupported):  # version 0: all 16 bytes compared
        select_platform_levels(info, SGX, 10, bytes(_tdx(1, 0, 3)))


def test_module_status_converges_and_advisories_are_united() -> None:
    info = _info(
        [_level("UpToDate", _tdx(0, 0, 3), adv=("SA-1",))],
        [_isv(7, "UpToDate"), _isv(4, "OutOfDate", ("SA-2",))],
    )
    qe = _qe([_isv(4, "UpToDate"), _isv(2, "OutOfDate", ("SA-3",))])
    td = _td(_tdx(5, 1, 3))
    v = evaluate(
        tcb_info=info,
        qe_identity=qe,
        qe_isvsvn=4,
        cpusvn=SGX,
        pcesvn=10,
        td=td,
        module=module_identity(info, td),
    )
    assert (v.status, v.advisory_ids) == ("OutOfDate", ("SA-1", "SA-2"))
    v = evaluate(
        tcb_info=info,
        qe_identity=qe,
        qe_isvsvn=3,
        cpusvn=SGX,
        pcesvn=10,
        td=_td(_tdx(8, 1, 3)),
        module=module_identity(info, td),
    )
    assert (v.status, v.advisory_ids) == ("OutOfDate", ("SA-1", "SA-3"))


def test_td_relaunch_is_advised_when_the_current_tcb_is_latest() -> None:
    info = _info(
        [_level("UpToDate", _tdx(0, 0, 3)), _level("OutOfDate", _tdx(0, 0, 2))],
        [_isv(7, "UpToDate"), _isv(4, "OutOfDate")],
    )
    qe = _qe([_isv(4, "UpToDate")])
    launched = _td(_tdx(5, 1, 2), svn2=_tdx(7, 1, 3))  # updated module, not yet relaunched
    v = evaluate(
        tcb_info=info,
        qe_identity=qe,
        qe_isvsvn=4,
        cpusvn=SGX,
        pcesvn=10,
        td=launched,
        module=module_identity(info, launched),
    )
    assert v.status == "TDRelaunchAdvised"
    stale = _td(_tdx(5, 1, 2), svn2=_tdx(5, 1, 2))
    v = evaluate(
        tcb_info=info,
        qe_identity=qe,
        qe_isvsvn=4,
        cpusvn=SGX,
        pcesvn=10,
        td=stale,
        module=module_identity(info, stale),
    )
    assert v.status == "OutOfDate"


def test_module_identity_must_exist_and_match() -> None:
    info = _info([_level("UpToDate", _tdx(0, 0, 3))], [_isv(1, "UpToDate")])
    with pytest.raises(TdxModuleMismatch):
        module_identity(info, _td(_tdx(5, 3, 3)))  # no TDX_03 identity
    with pytest.raises(TdxModuleMismatch):
        module_identity(info, _td(_tdx(5, 1, 3), signer=b"\x01" * 48))


def test_qe_below_every_level_is_not_supported() -> None:
    info = _info([_level("UpToDate", _tdx(0, 0, 3))], [])
    with pytest.raises(TcbNotSupported):
        evaluate(
            tcb_info=info,
            qe_identity=_qe([_isv(4, "UpToDate")]),
            qe_isvsvn=3,
            cpusvn=SGX,
            pcesvn=10,
            td=None,
            module=None,
        )


def test_relaunch_check_needs_the_current_module_identity() -> None:
    info = _info(
        [_level("UpToDate", _tdx(0, 0, 3)), _level("OutOfDate", _tdx(0, 0, 2))],
        [_isv(7, "UpToDate"), _isv(4, "OutOfDate")],
    )
    td = _td(_tdx(5, 1, 2), svn2=_tdx(7, 3, 3))  # updated to a module version with no identity
    with pytest.raises(TdxModuleMismatch):
        evaluate(
            tcb_info=info,
            qe_identity=_qe([_isv(4, "UpToDate")]),
            qe_isvsvn=4,
            cpusvn=SGX,
            pcesvn=10,
            td=td,
            module=module_identity(info, td),
        )
