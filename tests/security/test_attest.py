"""Attacks on the attestation bootstrap, as an attacker would run them: a peer registered on
the real registry contract (embedded EVM) with a quote the relying party must not accept,
seen through the attested registry view every service builds (`Attestation.registry_view`).

- a simulated quote, against a service with no `dangerous_*` setting (even when the
  attacker also runs the PCCS the service fetches collateral from);
- a quote from a platform whose TCB is OutOfDate past the grace period, signed by a PKI the
  service trusts (the simulated dev PKI of a devnet stands in for Intel's);
- a tampered collateral cache on disk.
Each is refused as ATTESTATION_FAILED (the peer counts as unregistered), with the
attestation reason available to the operator (`Attestation.verify`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contracts"))

from contracts_support import Net, make_net

from attestation.collateral import Collateral
from attestation.exceptions import AttestationError
from attestation.providers.pccs import CollateralFor, SimulatedPccs
from attestation.providers.simulated import SimulatedTdx, _sig64
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import to_bytes20
from nox.chain.exceptions import NodeNotAuthorized

RUNNER = 2
DAY = 86400


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A devnet's dev PKI on disk (what `dangerous_simulated_tdx_dir` names)."""
    folder = tmp_path_factory.mktemp("dev-tdx")
    SimulatedTdx.create(folder)
    return folder


@pytest.fixture(scope="module")
def net(sim_dir: Path) -> Net:
    return make_net(EmbeddedChain(), SimulatedTdx.load(sim_dir))


@contextlib.contextmanager
def _served(collateral_for: CollateralFor) -> Iterator[SimulatedPccs]:
    server = SimulatedPccs(collateral_for).start()
    try:
        yield server
    finally:
        server.stop()


def out_of_date(sim: SimulatedTdx, superseded_at: int, now: int) -> Collateral:
    """The dev PKI's collateral, re-signed with its TCB-signing key, in which the platform's
    level became OutOfDate at `superseded_at` (a newer level the platform does not reach)."""
    base = sim.collateral(now=now)
    info = json.loads(base.tcb_info)
    [level] = info["tcbLevels"]
    newer = json.loads(json.dumps(level))
    newer["tcb"]["sgxtcbcomponents"] = [{"svn": 255} for _ in range(16)]
    newer["tcbDate"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(superseded_at))
    level["tcbStatus"] = "OutOfDate"
    level["tcbDate"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(superseded_at - 90 * DAY))
    info["tcbLevels"] = [newer, level]
    text = json.dumps(info, separators=(",", ":"))
    signature = _sig64(sim.keys["tcb_signing"], text.encode())
    return dataclasses.replace(base, tcb_info=text, tcb_info_signature=signature)


def _refused(attestation_view: object, address: bytes, now: int) -> str:
    with pytest.raises(NodeNotAuthorized) as err:
        attestation_view.require(address, RUNNER, now)  # type: ignore[attr-defined]
    return str(err.value.reason)


def test_a_simulated_quote_is_unregistered_for_a_service_without_dangerous_settings(
    net: Net, tmp_path: Path
) -> None:
    peer = to_bytes20(net.register_node(RUNNER).address)
    now = net.backend.now()
    # the attacker even runs the PCCS: it serves the dev PKI's collateral
    with _served(lambda _f: net.sim.collateral(now=now)) as pccs:
        production = build_attestation(
            AttestationSettings(pccs_url=pccs.url, collateral_cache_dir=tmp_path / "c")
        )
        view = production.registry_view(net.registry, refresh_interval=0.0)
        assert _refused(view, peer, now) == "ATTESTATION_FAILED"
        quote = view.node(peer).quote  # type: ignore[union-attr]
        with pytest.raises(AttestationError) as err:
            production.verify(quote, now)
        assert err.value.reason == "UNTRUSTED_ROOT"
        production.close()


def test_an_out_of_date_peer_past_the_grace_period_is_unregistered(
    net: Net, sim_dir: Path, tmp_path: Path
) -> None:
    peer = to_bytes20(net.register_node(RUNNER).address)
    now = net.backend.now()
    superseded = now - 40 * DAY
    with _served(lambda _f: out_of_date(net.sim, superseded, now)) as pccs:

        def view_with(**policy: object) -> object:
            settings = AttestationSettings(
                pccs_url=pccs.url, dangerous_simulated_tdx_dir=sim_dir, **policy
            )
            return build_attestation(settings).registry_view(net.registry, refresh_interval=0)

        strict = view_with()
        assert _refused(strict, peer, now) == "ATTESTATION_FAILED"
        expired_grace = view_with(tcb_policy_out_of_date_grace_seconds=30 * DAY)
        assert _refused(expired_grace, peer, now) == "ATTESTATION_FAILED"
        within = view_with(tcb_policy_out_of_date_grace_seconds=60 * DAY)
        assert within.require(peer, RUNNER, now).address == peer  # type: ignore[attr-defined]
        # accepted near the end of its grace period: the view's cached verdict (kept up to
        # an hour) ends with the grace period, not an hour later
        ending = view_with(tcb_policy_out_of_date_grace_seconds=40 * DAY + 600)
        assert ending.require(peer, RUNNER, now).address == peer  # type: ignore[attr-defined]
        assert ending.require(peer, RUNNER, now + 600).address == peer  # type: ignore[attr-defined]
        assert _refused(ending, peer, now + 601) == "ATTESTATION_FAILED"


def test_a_tampered_collateral_cache_cannot_make_a_forged_quote_verify(
    net: Net, tmp_path: Path
) -> None:
    peer = to_bytes20(net.register_node(RUNNER).address)
    now = net.backend.now()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    # the attacker writes its own PKI's collateral where the service caches the platform's
    (cache / "tdx-4E4F58000000-platform.json").write_text(net.sim.collateral(now=now).to_json())
    with _served(lambda _f: None) as pccs:  # the real PCCS knows no such platform
        production = build_attestation(
            AttestationSettings(pccs_url=pccs.url, collateral_cache_dir=cache)
        )
        view = production.registry_view(net.registry, refresh_interval=0.0)
        assert _refused(view, peer, now) == "ATTESTATION_FAILED"
        with pytest.raises(AttestationError) as err:
            production.verify(view.node(peer).quote, now)  # type: ignore[union-attr]
        assert err.value.reason == "UNTRUSTED_ROOT"
        # garbage in the cache is dropped and refetched, never trusted
        (cache / "tdx-4E4F58000000-platform.json").write_text("{not json")
        again = build_attestation(
            AttestationSettings(pccs_url=pccs.url, collateral_cache_dir=cache)
        )
        with pytest.raises(AttestationError) as err:
            again.verify(view.node(peer).quote, now)  # type: ignore[union-attr]
        assert err.value.reason == "COLLATERAL_FETCH_FAILED"
        assert not (cache / "tdx-4E4F58000000-platform.json").exists()
