"""Dual verification: accept only when dcap-qvl agrees; report every disagreement."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import dcap_qvl
import pytest
from conftest import SIM_NOW, Fixtures

from attestation import exceptions as E
from attestation.dual import Disagreement, DualVerifier, load_dcap_qvl
from attestation.providers.simulated import SimulatedTdx


def test_dcap_qvl_is_the_default_second_verifier(intel_root: bytes) -> None:
    assert load_dcap_qvl() is dcap_qvl
    assert DualVerifier.default([intel_root]).dual


def test_both_verifiers_agree_on_every_fixture_case(fx: Fixtures, intel_root: bytes) -> None:
    seen: list[Disagreement] = []
    dual = DualVerifier([intel_root], dcap_qvl=dcap_qvl, on_disagreement=seen.append)
    for case in fx.index:
        quote, coll = fx.quote(case["quote"]), fx.collateral(case["collateral"])
        if case["error"] is None:
            verdict = dual.verify(quote, coll, now=case["now"])
            assert verdict.verifiers == ("attestation", "dcap-qvl")
            assert (verdict.status, list(verdict.advisory_ids)) == (
                case["status"],
                sorted(case["advisory_ids"]),
            )
        else:
            with pytest.raises(E.AttestationError):
                dual.verify(quote, coll, now=case["now"])
    assert seen == []


def test_n20_disagreement_is_reported_and_rejected(fx: Fixtures, intel_root: bytes) -> None:
    seen: list[Disagreement] = []
    dual = DualVerifier([intel_root], dcap_qvl=dcap_qvl, on_disagreement=seen.append)
    case = fx.case("N20_outer_cert_type_5")
    with pytest.raises(E.UnsupportedQuote):
        dual.verify(fx.negative_quote(case), fx.collateral(case["collateral"]), now=case["now"])
    assert len(seen) == 1
    assert seen[0].dcap_qvl.startswith("accepted")


def _fake_dcap_qvl(status: str, advisories: list[str]) -> Any:
    report = SimpleNamespace(status=status, advisory_ids=advisories)
    return SimpleNamespace(
        QuoteCollateralV3=dcap_qvl.QuoteCollateralV3,
        verify_with_root_ca=lambda *_args: report,
    )


def test_different_status_is_a_disagreement(sim: SimulatedTdx) -> None:
    seen: list[Disagreement] = []
    dual = DualVerifier(
        [sim.root_der], dcap_qvl=_fake_dcap_qvl("OutOfDate", []), on_disagreement=seen.append
    )
    with pytest.raises(E.VerifierDisagreement):
        dual.verify(sim.quote(bytes(64)), sim.collateral(), now=SIM_NOW)
    assert len(seen) == 1


def test_different_advisories_are_a_disagreement(sim: SimulatedTdx) -> None:
    dual = DualVerifier([sim.root_der], dcap_qvl=_fake_dcap_qvl("UpToDate", ["INTEL-SA-1"]))
    with pytest.raises(E.VerifierDisagreement):
        dual.verify(sim.quote(bytes(64)), sim.collateral(), now=SIM_NOW)


def test_dcap_qvl_rejection_of_an_accepted_quote_is_a_disagreement(sim: SimulatedTdx) -> None:
    def reject(*_args: object) -> None:
        raise ValueError("dcap-qvl says no")

    fake = SimpleNamespace(QuoteCollateralV3=dcap_qvl.QuoteCollateralV3, verify_with_root_ca=reject)
    with pytest.raises(E.VerifierDisagreement):
        DualVerifier([sim.root_der], dcap_qvl=fake).verify(
            sim.quote(bytes(64)), sim.collateral(), now=SIM_NOW
        )


def test_simulated_quotes_pass_both_verifiers_with_the_dev_root(
    sim: SimulatedTdx, intel_root: bytes
) -> None:
    dual = DualVerifier([intel_root, sim.root_der], dcap_qvl=dcap_qvl)
    verdict = dual.verify(sim.quote(bytes(64)), sim.collateral(), now=SIM_NOW)
    assert verdict.verifiers == ("attestation", "dcap-qvl")
    assert verdict.status == "UpToDate"


def test_single_mode_without_dcap_qvl(sim: SimulatedTdx) -> None:
    verdict = DualVerifier([sim.root_der], dcap_qvl=None).verify(
        sim.quote(bytes(64)), sim.collateral(), now=SIM_NOW
    )
    assert verdict.verifiers == ("attestation",)
