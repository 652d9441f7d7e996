"""RegistryView: on-chain state from events + off-chain DCAP verification of the raw quote."""

from __future__ import annotations

import pytest
from contracts_support import ENDPOINT, WORKLOAD_ID, Net

from attestation import verify_quote
from attestation.providers.simulated import SimulatedTdx
from nox.chain.contracts import to_bytes20
from nox.chain.exceptions import NodeNotAuthorized
from nox.chain.registry import RegistryView

RUNNER, GATEWAY = 2, 3


def _verifier(sim: SimulatedTdx):  # type: ignore[no-untyped-def]
    def verify(quote: bytes, now: int) -> None:
        verify_quote(quote, sim.collateral(now=now), now=now, trusted_roots=[sim.root_der])

    return verify


def _reason(view: RegistryView, address: str, role: int, now: int) -> str:
    with pytest.raises(NodeNotAuthorized) as info:
        view.require(address, role, now)
    return info.value.reason


def test_registered_attested_node_is_authorized(net: Net, sim_tdx: SimulatedTdx) -> None:
    enclave = net.register_node(RUNNER)
    view = RegistryView(net.registry, verifier=_verifier(sim_tdx))
    node = view.require(enclave.address, RUNNER, net.backend.now())
    assert node.address == to_bytes20(enclave.address)
    assert node.endpoint == ENDPOINT
    assert node.workload_id == WORKLOAD_ID
    assert len(node.quote) > 632
    assert [n.address for n in view.active(RUNNER, net.backend.now())] == [node.address]
    assert _reason(view, enclave.address, GATEWAY, net.backend.now()) == "ROLE_MISMATCH"


def test_quote_that_does_not_verify_counts_as_unregistered(net: Net, sim_tdx: SimulatedTdx) -> None:
    """Accepted on-chain (on-chain checks skip DCAP), rejected by every relying party."""
    rogue = SimulatedTdx.generate()  # a dev PKI this deployment does not trust
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    enclave = net.new_enclave()
    operator = net.backend.accounts[1]
    quote = rogue.quote(
        bytes(
            net.bound_quote(to_bytes20(enclave.address), RUNNER, to_bytes20(operator.address))[
                48 + 520 : 48 + 584
            ]
        )
    )
    net.registry.register(quote, RUNNER, operator.address, ENDPOINT, enclave)
    net.registry.require_active(enclave.address, RUNNER)  # on-chain: active
    view = RegistryView(net.registry, verifier=_verifier(sim_tdx))
    assert _reason(view, enclave.address, RUNNER, net.backend.now()) == "ATTESTATION_FAILED"
    assert view.active(RUNNER, net.backend.now()) == []


def test_revocation_expiry_and_workload_removal_are_seen(net: Net, sim_tdx: SimulatedTdx) -> None:
    a, b = net.register_node(RUNNER), net.register_node(RUNNER, allow=False)
    view = RegistryView(net.registry, verifier=_verifier(sim_tdx), refresh_interval=3600)
    now = net.backend.now()
    view.require(a.address, RUNNER, now)
    view.require(b.address, RUNNER, now)
    node = view.node(a.address)
    assert node is not None
    assert _reason(view, a.address, RUNNER, node.expires_at) == "REGISTRATION_EXPIRED"

    net.registry.revoke_enclave(a.address, net.owner)
    view.refresh()
    assert _reason(view, a.address, RUNNER, now) == "REVOKED"
    net.registry.disallow_workload(RUNNER, WORKLOAD_ID, net.owner)
    view.refresh()
    assert _reason(view, b.address, RUNNER, now) == "WORKLOAD_NOT_ALLOWED"


def test_unknown_node_and_late_registration(net: Net, sim_tdx: SimulatedTdx) -> None:
    clock = [0.0]
    view = RegistryView(
        net.registry, verifier=_verifier(sim_tdx), refresh_interval=3600, monotonic=lambda: clock[0]
    )
    stranger = net.backend.accounts[7].address
    assert _reason(view, stranger, RUNNER, net.backend.now()) == "SIGNER_NOT_REGISTERED"
    enclave = net.register_node(RUNNER)
    clock[0] += 2  # a miss refreshes at most once a second, not every refresh_interval
    view.require(enclave.address, RUNNER, net.backend.now())


def test_refresh_picks_up_re_registration_with_a_new_quote(net: Net, sim_tdx: SimulatedTdx) -> None:
    enclave = net.register_node(RUNNER)
    view = RegistryView(net.registry, verifier=_verifier(sim_tdx))
    first = view.require(enclave.address, RUNNER, net.backend.now())
    net.backend.advance_time(3600)
    operator = net.backend.accounts[1]
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, to_bytes20(operator.address))
    net.registry.register(quote, RUNNER, operator.address, ENDPOINT, enclave)
    view.refresh()
    second = view.require(enclave.address, RUNNER, net.backend.now())
    assert second.expires_at > first.expires_at
    assert second.quote == quote


def _producer_reason(view: RegistryView, address: str, role: int, now: int) -> str:
    with pytest.raises(NodeNotAuthorized) as info:
        view.require_producer(address, role, now)
    return info.value.reason


def test_a_producer_whose_registration_expired_still_counts_until_revoked(
    net: Net, sim_tdx: SimulatedTdx
) -> None:
    """`require_producer` (handle bindings): an expired registration is accepted, its quote
    verified as of its last valid moment; revoked, never registered or another role is not."""
    a = net.register_node(RUNNER)
    view = RegistryView(net.registry, verifier=_verifier(sim_tdx), refresh_interval=3600)
    node = view.node(a.address)
    assert node is not None
    later = node.expires_at + 86400
    assert _reason(view, a.address, RUNNER, later) == "REGISTRATION_EXPIRED"
    assert view.require_producer(a.address, RUNNER, later).address == node.address
    assert _producer_reason(view, a.address, GATEWAY, later) == "ROLE_MISMATCH"
    stranger = net.new_enclave()
    assert _producer_reason(view, stranger.address, RUNNER, later) == "SIGNER_NOT_REGISTERED"
    net.registry.revoke_enclave(a.address, net.owner)
    view.refresh()
    assert _producer_reason(view, a.address, RUNNER, later) == "REVOKED"


def test_a_producer_whose_quote_does_not_verify_does_not_count(
    net: Net, sim_tdx: SimulatedTdx
) -> None:
    a = net.register_node(RUNNER)
    rogue = SimulatedTdx.generate()  # the view trusts another dev PKI than the quote's
    view = RegistryView(net.registry, verifier=_verifier(rogue))
    node = view.node(a.address)
    assert node is not None
    assert _producer_reason(view, a.address, RUNNER, node.expires_at + 10) == "ATTESTATION_FAILED"
