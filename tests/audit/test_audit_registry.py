"""`audit_registry` on the embedded EVM and on anvil: every registration is listed, good
quotes verify, and registrations the contract accepted but whose quote does not verify
(broken signature, untrusted root) are flagged with the attestation package's reason."""

from __future__ import annotations

import pytest
from audit_support import foreign_root_node, tampered_node
from contracts_support import WORKLOAD_ID, Net

from attestation import Policy
from attestation.dual import DualVerifier
from nox.audit import CollateralSet, NodeVerdict, all_active_ok, audit_registry
from nox.chain.contracts import to_bytes20

RUNNER, GATEWAY, KMS, INGESTOR = 2, 3, 4, 5


def _audit(net: Net, **kwargs: object) -> dict[bytes, NodeVerdict]:
    verdicts = audit_registry(
        net.backend,
        net.registry.address,
        trusted_roots=[net.sim.root_der],
        collateral_for=CollateralSet([net.sim.collateral()]),
        now=net.backend.now(),
        **kwargs,  # type: ignore[arg-type]
    )
    by_address = {v.address: v for v in verdicts}
    assert len(by_address) == len(verdicts)
    return by_address


def test_lists_every_node_and_flags_tampered_quotes(net: Net) -> None:
    good_runner = net.register_node(RUNNER)
    good_gateway = net.register_node(GATEWAY)
    tampered = tampered_node(net, RUNNER)
    foreign = foreign_root_node(net, KMS)
    revoked = net.register_node(KMS)
    net.registry.revoke_enclave(revoked.address, net.owner)
    disallowed = net.register_node(INGESTOR)
    net.registry.disallow_workload(INGESTOR, WORKLOAD_ID, net.owner)
    # the contract took the tampered registrations: they are active on-chain
    assert net.registry.is_active(tampered.address)
    assert net.registry.is_active(foreign.address)

    found = _audit(net)
    accounts = [good_runner, good_gateway, tampered, foreign, revoked, disallowed]
    assert set(found) == {to_bytes20(a.address) for a in accounts}
    v = {
        name: found[to_bytes20(a.address)]
        for name, a in zip(
            ["runner", "gateway", "tampered", "foreign", "revoked", "disallowed"],
            accounts,
            strict=True,
        )
    }

    for name in ("runner", "gateway"):
        assert v[name].ok, v[name]
        assert v[name].reason is None
        assert v[name].tcb_status == "UpToDate"
        assert v[name].workload_id == WORKLOAD_ID
    assert v["gateway"].role_name == "gateway"

    assert not v["tampered"].ok
    assert v["tampered"].reason == "SIGNATURE_INVALID"
    assert v["tampered"].status == "active"
    assert not v["foreign"].ok
    assert v["foreign"].reason == "UNTRUSTED_ROOT"

    # revocation does not make a genuine quote fail, it makes the node inactive
    assert v["revoked"].status == "revoked"
    assert v["revoked"].ok
    assert v["disallowed"].status == "revoked"
    assert v["disallowed"].reason == "WORKLOAD_NOT_ALLOWED"

    # status agrees with the contract's own isActive at chain time
    for verdict in found.values():
        assert (verdict.status == "active") == net.registry.is_active(verdict.address)
    assert not all_active_ok(list(found.values()))


def test_all_good_nodes_verify(net: Net) -> None:
    nodes = [net.register_node(role) for role in (1, 2, 3, 4, 5)]
    found = _audit(net)
    assert [found[to_bytes20(n.address)].role for n in nodes] == [1, 2, 3, 4, 5]
    assert all(v.ok and v.status == "active" for v in found.values())
    assert all_active_ok(list(found.values()))


def test_expired_node_is_listed_but_not_counted(net: Net) -> None:
    net.registry.set_max_attestation_age(100, net.owner)
    short = net.register_node(RUNNER)
    net.registry.set_max_attestation_age(86_400, net.owner)
    long = net.register_node(RUNNER)
    net.backend.advance_time(200)
    found = _audit(net)
    assert found[to_bytes20(short.address)].status == "expired"
    assert found[to_bytes20(long.address)].status == "active"
    assert not net.registry.is_active(short.address)
    assert all_active_ok(list(found.values()))


def test_reregistration_is_judged_by_the_current_quote(net: Net) -> None:
    """A node that re-registers with a tampered quote is judged by that quote, not by its
    earlier good one still present in the events."""
    from audit_support import broken_signature
    from contracts_support import ENDPOINT

    node = net.register_node(RUNNER)
    operator = net.backend.accounts[1]
    quote = broken_signature(
        net.bound_quote(to_bytes20(node.address), RUNNER, to_bytes20(operator.address))
    )
    net.registry.register(quote, RUNNER, operator.address, ENDPOINT, node)
    verdict = _audit(net)[to_bytes20(node.address)]
    assert verdict.registrations == 2
    assert verdict.reason == "SIGNATURE_INVALID"


def test_only_intel_root_rejects_simulated_quotes(net: Net) -> None:
    from attestation import intel_sgx_root_ca

    node = net.register_node(RUNNER)
    verdicts = audit_registry(
        net.backend,
        net.registry.address,
        trusted_roots=[intel_sgx_root_ca()],
        collateral_for=CollateralSet([net.sim.collateral()]),
        now=net.backend.now(),
    )
    (verdict,) = verdicts
    assert verdict.address == to_bytes20(node.address)
    assert verdict.reason == "UNTRUSTED_ROOT"


def test_tcb_policy_and_missing_collateral(net: Net) -> None:
    net.register_node(RUNNER)
    strict = Policy(allowed_statuses=frozenset({"OutOfDate"}))
    (verdict,) = _audit(
        net, policy=strict, verifier=DualVerifier([net.sim.root_der], policy=strict)
    ).values()
    assert verdict.reason == "TCB_STATUS_NOT_ALLOWED"
    (missing,) = audit_registry(
        net.backend,
        net.registry.address,
        trusted_roots=[net.sim.root_der],
        collateral_for=CollateralSet([]),
        now=net.backend.now(),
    )
    assert missing.reason == "COLLATERAL_UNAVAILABLE"


def test_checks_the_contract_also_makes(net: Net) -> None:
    """Binding and workload id are checked on-chain too, so no registration can carry a
    mismatch; the audit re-checks them anyway (it trusts no contract deployment). Fed a
    record that disagrees with its quote, it names the mismatch."""
    from dataclasses import replace

    from nox.audit import AuditCheckFailed, check_registration, read_registrations

    net.register_node(RUNNER)
    (reg,) = read_registrations(net.registry)
    kwargs = {
        "chain_id": net.backend.chain_id,
        "registry": to_bytes20(net.registry.address),
        "verifier": DualVerifier([net.sim.root_der]),
        "collateral_for": CollateralSet([net.sim.collateral()]),
        "policy": Policy.any_tcb_status(),
        "now": net.backend.now(),
    }
    check_registration(reg, **kwargs)  # type: ignore[arg-type]
    cases = {
        "REPORT_DATA_MISMATCH": replace(reg, record=replace(reg.record, endpoint="https://x")),
        "WORKLOAD_ID_MISMATCH": replace(reg, record=replace(reg.record, workload_id=bytes(32))),
        "QUOTE_NOT_FOUND": replace(reg, quote=None),
    }
    for reason, case in cases.items():
        with pytest.raises(AuditCheckFailed) as info:
            check_registration(case, **kwargs)  # type: ignore[arg-type]
        assert info.value.reason == reason
