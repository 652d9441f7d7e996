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
from attestation.tcb import (
    CONFIG_AND_SW,
    CONFIG_NEEDED,
    NON_TERMINAL_STATUSES,
    OUT_OF_DATE,
    OUT_OF_DATE_CONFIG,
    RELAUNCH,
    RELAUNCH_CONFIG,
    SW_HARDENING,
    UP_TO_DATE,
)
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
    #: Seconds an OutOfDate TCB (and TDRelaunchAdvised, whose TD runs on an out-of-date
    #: module) stays acceptable after the TCB evaluation that made it so (the tcbDate of the
    #: level that superseded it); None: never accepted unless listed in `allowed_statuses`.
    #: The *ConfigurationNeeded variants also need ConfigurationNeeded allowed.
    out_of_date_grace: int | None = None
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

    @classmethod
    def tcb(
        cls,
        *,
        allow_sw_hardening_needed: bool = False,
        allow_configuration_needed: bool = False,
        out_of_date_grace: int | None = None,
        denied_advisories: Iterable[str] = (),
    ) -> Policy:
        """The relying-party TCB policy of a service: UpToDate always; SWHardeningNeeded and
        ConfigurationNeeded (and both) when allowed; OutOfDate within `out_of_date_grace`
        seconds of its supersession; Revoked never (the verifier refuses it)."""
        statuses = {UP_TO_DATE}
        if allow_sw_hardening_needed:
            statuses.add(SW_HARDENING)
        if allow_configuration_needed:
            statuses.add(CONFIG_NEEDED)
        if allow_sw_hardening_needed and allow_configuration_needed:
            statuses.add(CONFIG_AND_SW)
        return cls(
            allowed_statuses=frozenset(statuses),
            rejected_advisories=frozenset(denied_advisories),
            out_of_date_grace=out_of_date_grace,
        )

    def describe(self) -> dict[str, object]:
        """The TCB part of the policy, for a start-up log line, a metric or an info RPC."""
        return {
            "allowed_tcb_statuses": sorted(self.allowed_statuses),
            "out_of_date_grace_seconds": self.out_of_date_grace,
            "denied_advisories": sorted(self.rejected_advisories),
            "revoked": "never",
        }


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


#: Out-of-date statuses the grace period applies to, and the status each also needs allowed.
_GRACE_STATUSES: Final = {
    OUT_OF_DATE: UP_TO_DATE,
    RELAUNCH: UP_TO_DATE,
    OUT_OF_DATE_CONFIG: CONFIG_NEEDED,
    RELAUNCH_CONFIG: CONFIG_NEEDED,
}


def check_tcb(
    status: str,
    advisory_ids: Iterable[str],
    policy: Policy,
    *,
    out_of_date_since: int | None = None,
    now: int | None = None,
) -> None:
    """Raise TcbStatusNotAllowed unless `policy` accepts the status and advisories.

    An out-of-date status outside `allowed_statuses` is accepted only with a grace period,
    `out_of_date_since` and `now` given, and `now` within the grace period.
    """
    if status not in policy.allowed_statuses:
        if status not in _GRACE_STATUSES or policy.out_of_date_grace is None:
            raise TcbStatusNotAllowed("tcb_status", f"status {status} is not allowed")
        if _GRACE_STATUSES[status] not in policy.allowed_statuses:
            raise TcbStatusNotAllowed(
                "tcb_status", f"status {status} is not allowed ({_GRACE_STATUSES[status]} is not)"
            )
        if out_of_date_since is None or now is None:
            raise TcbStatusNotAllowed("tcb_status", f"status {status}: out-of-date date unknown")
        deadline = out_of_date_since + policy.out_of_date_grace
        if now > deadline:
            raise TcbStatusNotAllowed(
                "tcb_status",
                f"status {status} since {out_of_date_since}: grace period ended at {deadline}",
            )
    for advisory in advisory_ids:
        if advisory in policy.rejected_advisories or (
            policy.allowed_advisories is not None and advisory not in policy.allowed_advisories
        ):
            raise TcbStatusNotAllowed("advisory_ids", f"advisory {advisory} is not allowed")


def accepted_until(verified: VerifiedQuote, policy: Policy) -> int:
    """Until when a quote `check_policy` accepted stays acceptable: its collateral's expiry,
    or the end of its OutOfDate grace period if that comes first."""
    until = verified.collateral_expires_at
    since = verified.tcb.out_of_date_since
    grace = policy.out_of_date_grace
    if verified.status not in policy.allowed_statuses and since is not None and grace is not None:
        until = min(until, since + grace + 1)
    return until


def check_policy(
    verified: VerifiedQuote,
    policy: Policy,
    *,
    now: int,
    expected_report_data: bytes | None = None,
) -> None:
    """Raise a `PolicyViolation` subclass unless `policy` accepts `verified` at `now`."""
    check_attributes(verified.quote, policy)
    check_tcb(
        verified.status,
        verified.advisory_ids,
        policy,
        out_of_date_since=verified.tcb.out_of_date_since,
        now=now,
    )
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
