"""Relying-party policy over a verified quote (notes §3 step 20; DESIGN §3).

`verify_quote` says whether a quote is genuine and how current its TCB is; the policy says
whether *this* relying party accepts it: which TCB statuses and advisories, whether debug,
migratable or service-TD-bound TDs are acceptable (never by default: the switches are named
`dangerous_*`), how old the collateral may be, which workload ids are expected and what the
report data must bind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from attestation.exceptions import (
    CollateralTooOld,
    DebugNotAllowed,
    MeasurementMismatch,
    ReportDataMismatch,
    ServiceTdNotAllowed,
    TcbStatusNotAllowed,
    TdAttributesNotAllowed,
)
from attestation.measurements import workload_id
from attestation.quote import EnclaveReport, Quote, TdReport
from attestation.tcb import NON_TERMINAL_STATUSES
from attestation.verify import VerifiedQuote

TD_DEBUG: Final = 1 << 0
TD_RESERVED_TUD: Final = 0xFE  # bits 1-7: reserved / profiling, must be zero
TD_SERVTD_EXT: Final = 1 << 17
TD_SEPT_VE_DISABLE: Final = 1 << 28
TD_MIGRATABLE: Final = 1 << 29
#: Attribute bits a production TD may set (ICSSD, SERVTD_EXT, LASS, SEPT_VE_DISABLE,
#: MIGRATABLE, PKS, KL, TPA, PERFMON) besides DEBUG; any other bit is reserved.
TD_KNOWN: Final = (
    TD_DEBUG
    | (1 << 16)
    | TD_SERVTD_EXT
    | (1 << 27)
    | TD_SEPT_VE_DISABLE
    | TD_MIGRATABLE
    | (1 << 30)
    | (1 << 31)
    | (1 << 62)
    | (1 << 63)
)


@dataclass(frozen=True, slots=True)
class Policy:
    """What a relying party accepts. Defaults are strict: UpToDate only, production TDs."""

    allowed_statuses: frozenset[str] = frozenset({"UpToDate"})
    rejected_advisories: frozenset[str] = frozenset()
    #: None: any advisory not rejected; otherwise every advisory must be listed here.
    allowed_advisories: frozenset[str] | None = None
    #: Maximum age in seconds of the collateral's issue date (None: only its own window).
    max_collateral_age: int | None = None
    #: Workload ids (keccak of the measurements) accepted; None skips the check.
    allowed_workload_ids: frozenset[bytes] | None = None
    dangerous_allow_debug: bool = False
    dangerous_allow_migratable: bool = False
    dangerous_allow_service_td: bool = False
    dangerous_allow_sept_ve: bool = False

    @classmethod
    def any_tcb_status(cls, **kwargs: object) -> Policy:
        """Accept every non-terminal TCB status (the auditor CLI's view); TD checks stay."""
        return cls(allowed_statuses=NON_TERMINAL_STATUSES, **kwargs)  # type: ignore[arg-type]


def check_attributes(quote: Quote, policy: Policy) -> None:
    """Debug, reserved, migratable and service-TD checks on the report (and SGX debug)."""
    body = quote.body
    if isinstance(body, EnclaveReport):
        if body.debug and not policy.dangerous_allow_debug:
            raise DebugNotAllowed("report.attributes", "SGX enclave runs in debug mode")
        return
    _check_td(body, policy)


def _check_td(td: TdReport, policy: Policy) -> None:
    attrs = td.td_attributes_int
    if attrs & TD_DEBUG and not policy.dangerous_allow_debug:
        raise DebugNotAllowed("td_report.td_attributes", "TD runs in debug mode")
    if attrs & TD_RESERVED_TUD or attrs & ~TD_KNOWN:
        raise TdAttributesNotAllowed("td_report.td_attributes", f"reserved bits set: {attrs:#x}")
    if attrs & TD_MIGRATABLE and not policy.dangerous_allow_migratable:
        raise TdAttributesNotAllowed("td_report.td_attributes", "TD is migratable")
    if not attrs & TD_SEPT_VE_DISABLE and not policy.dangerous_allow_sept_ve:
        raise TdAttributesNotAllowed("td_report.td_attributes", "SEPT_VE_DISABLE is not set")
    if not policy.dangerous_allow_service_td:
        if attrs & TD_SERVTD_EXT:
            raise ServiceTdNotAllowed("td_report.td_attributes", "SERVTD_EXT is set")
        if td.mr_service_td is not None and any(td.mr_service_td):
            raise ServiceTdNotAllowed("td_report.mr_service_td", "TD is bound to a service TD")


def check_tcb(status: str, advisory_ids: Iterable[str], policy: Policy) -> None:
    if status not in policy.allowed_statuses:
        raise TcbStatusNotAllowed("tcb_status", f"status {status} is not allowed")
    for advisory in advisory_ids:
        if advisory in policy.rejected_advisories or (
            policy.allowed_advisories is not None and advisory not in policy.allowed_advisories
        ):
            raise TcbStatusNotAllowed("advisory_ids", f"advisory {advisory} is not allowed")


def check_policy(
    verified: VerifiedQuote,
    policy: Policy,
    *,
    now: int,
    expected_report_data: bytes | None = None,
) -> None:
    """Raise a `PolicyViolation` subclass unless `policy` accepts `verified` at `now`."""
    check_attributes(verified.quote, policy)
    check_tcb(verified.status, verified.advisory_ids, policy)
    if policy.max_collateral_age is not None:
        age = now - verified.collateral_issued_at
        if age > policy.max_collateral_age:
            raise CollateralTooOld(
                "collateral.issueDate", f"{age} s old, limit {policy.max_collateral_age} s"
            )
    if policy.allowed_workload_ids is not None:
        td = verified.quote.body
        if not isinstance(td, TdReport):
            raise MeasurementMismatch("body", "workload ids are defined for TDX quotes only")
        if workload_id(td) not in policy.allowed_workload_ids:
            raise MeasurementMismatch("workload_id", f"{workload_id(td).hex()} is not allowed")
    if expected_report_data is not None and verified.quote.report_data != expected_report_data:
        raise ReportDataMismatch("report_data", "does not equal the expected report data")
