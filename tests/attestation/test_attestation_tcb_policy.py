"""The relying parties' TCB-status policy (`Policy.tcb`) on the real fixture quotes:
UpToDate accepted; SWHardeningNeeded / ConfigurationNeeded only when allowed; OutOfDate only
within the grace period after the TCB evaluation that superseded it; Revoked never; advisory
ids deniable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import Fixtures

from attestation.exceptions import TcbStatusNotAllowed
from attestation.policy import Policy, accepted_until, check_policy, check_tcb
from attestation.verify import VerifiedQuote, verify_quote

DAY = 86400
#: The TCB recovery (tcbDate of the UpToDate level) that made the automata quote OutOfDate.
SUPERSEDED = int(datetime(2024, 3, 13, tzinfo=UTC).timestamp())


def _verified(fx: Fixtures, case_id: str, intel_root: bytes) -> tuple[VerifiedQuote, int]:
    case = fx.case(case_id)
    quote = fx.quote(case["quote"])
    v = verify_quote(
        quote, fx.collateral(case["collateral"]), now=case["now"], trusted_roots=[intel_root]
    )
    assert v.status == case["status"]
    return v, case["now"]


def test_up_to_date_is_accepted_by_the_strict_policy(fx: Fixtures, intel_root: bytes) -> None:
    v, now = _verified(fx, "dcapqvl-tdx-v4", intel_root)
    assert v.tcb.out_of_date_since is None
    check_policy(v, Policy.tcb(), now=now)


def test_out_of_date_only_within_the_grace_period(fx: Fixtures, intel_root: bytes) -> None:
    v, now = _verified(fx, "automata-tdx-v4-solana", intel_root)
    assert v.status == "OutOfDate"
    assert v.tcb.out_of_date_since == SUPERSEDED
    with pytest.raises(TcbStatusNotAllowed, match="status OutOfDate is not allowed"):
        check_policy(v, Policy.tcb(), now=now)
    grace = now - SUPERSEDED
    check_policy(v, Policy.tcb(out_of_date_grace=grace), now=now)  # last second of grace
    with pytest.raises(TcbStatusNotAllowed, match="grace period ended") as err:
        check_policy(v, Policy.tcb(out_of_date_grace=grace - 1), now=now)
    assert err.value.reason == "TCB_STATUS_NOT_ALLOWED"
    # the same quote and grace a year later (newer collateral, same supersession date)
    later, later_now = _verified(fx, "automata-tdx-v4-1025", intel_root)
    assert later.tcb.out_of_date_since == SUPERSEDED
    with pytest.raises(TcbStatusNotAllowed, match="grace period ended"):
        check_policy(later, Policy.tcb(out_of_date_grace=grace), now=later_now)


def test_denied_advisories_refuse_even_within_grace(fx: Fixtures, intel_root: bytes) -> None:
    v, now = _verified(fx, "automata-tdx-v4-solana", intel_root)
    policy = Policy.tcb(out_of_date_grace=1000 * DAY, denied_advisories=["INTEL-SA-00982"])
    with pytest.raises(TcbStatusNotAllowed, match="advisory INTEL-SA-00982"):
        check_policy(v, policy, now=now)


def test_sw_hardening_and_configuration_needed_are_configurable(
    fx: Fixtures, intel_root: bytes
) -> None:
    sw, now = _verified(fx, "automata-sgx-v3", intel_root)  # SWHardeningNeeded
    with pytest.raises(TcbStatusNotAllowed):
        check_policy(sw, Policy.tcb(), now=now)
    with pytest.raises(TcbStatusNotAllowed):
        check_policy(sw, Policy.tcb(allow_configuration_needed=True), now=now)
    check_policy(sw, Policy.tcb(allow_sw_hardening_needed=True), now=now)
    both, now = _verified(fx, "dcapqvl-sgx-v3", intel_root)  # ConfigurationAndSWHardeningNeeded
    with pytest.raises(TcbStatusNotAllowed):
        check_policy(both, Policy.tcb(allow_sw_hardening_needed=True), now=now)
    check_policy(
        both,
        Policy.tcb(allow_sw_hardening_needed=True, allow_configuration_needed=True),
        now=now,
    )


@pytest.mark.parametrize("status", ["Revoked", "OutOfDate", "OutOfDateConfigurationNeeded"])
def test_revoked_never_and_out_of_date_needs_its_date(status: str) -> None:
    lenient = Policy.tcb(
        allow_sw_hardening_needed=True, allow_configuration_needed=True, out_of_date_grace=10**9
    )
    if status == "Revoked":
        with pytest.raises(TcbStatusNotAllowed):
            check_tcb(status, (), lenient, out_of_date_since=0, now=1)
        return
    check_tcb(status, (), lenient, out_of_date_since=0, now=1)
    with pytest.raises(TcbStatusNotAllowed, match="out-of-date date unknown"):
        check_tcb(status, (), lenient, out_of_date_since=None, now=1)


def test_out_of_date_configuration_needed_also_needs_configuration_allowed() -> None:
    policy = Policy.tcb(out_of_date_grace=10**9)
    with pytest.raises(TcbStatusNotAllowed, match="ConfigurationNeeded is not"):
        check_tcb("OutOfDateConfigurationNeeded", (), policy, out_of_date_since=0, now=1)


def test_the_policy_describes_itself() -> None:
    policy = Policy.tcb(allow_sw_hardening_needed=True, out_of_date_grace=DAY)
    assert policy.describe() == {
        "allowed_tcb_statuses": ["SWHardeningNeeded", "UpToDate"],
        "out_of_date_grace_seconds": DAY,
        "denied_advisories": [],
        "revoked": "never",
    }


def test_a_verdict_holds_until_the_grace_period_or_the_collateral_ends(
    fx: Fixtures, intel_root: bytes
) -> None:
    v, _ = _verified(fx, "automata-tdx-v4-solana", intel_root)
    grace = v.collateral_expires_at - SUPERSEDED - 100  # ends before the collateral
    assert accepted_until(v, Policy.tcb(out_of_date_grace=grace)) == SUPERSEDED + grace + 1
    long_grace = Policy.tcb(out_of_date_grace=10**9)
    assert accepted_until(v, long_grace) == v.collateral_expires_at
    up, _ = _verified(fx, "dcapqvl-tdx-v4", intel_root)
    assert accepted_until(up, Policy.tcb()) == up.collateral_expires_at
