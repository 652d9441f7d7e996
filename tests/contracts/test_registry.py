"""NoxRegistry on both backends: registration checks, expiry, revocation, governance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from contracts_support import ENDPOINT, WORKLOAD_ID, Net
from web3.logs import DISCARD

from attestation import parse_quote, workload_id
from attestation.measurements import Measurements
from nox.chain.artifacts import load_artifact
from nox.chain.contracts import to_bytes20, to_checksum
from nox.chain.exceptions import ContractReverted
from nox.crypto.keys import EnclaveKey

RUNNER, GATEWAY, KMS = 2, 3, 4
DAY = 24 * 3600


def _reverts(name: str) -> pytest.RaisesExc[ContractReverted]:
    return pytest.raises(ContractReverted, match=rf"^CONTRACT_REVERTED: {name}\(")


def _fixture_quote(tdx_fixtures: Path, case_id: str) -> bytes:
    case = next(
        c for c in json.loads((tdx_fixtures / "index.json").read_text()) if c["id"] == case_id
    )
    raw = (tdx_fixtures / case["quote"]).read_bytes()
    if case["quote"].endswith(".hex"):
        raw = bytes.fromhex(raw.decode().strip().removeprefix("0x"))
    return raw[: case["used_len"]]


def _patch_report_data(quote: bytes, report_data: bytes) -> bytes:
    body = 48 if int.from_bytes(quote[:2], "little") == 4 else 54
    return quote[: body + 520] + report_data + quote[body + 584 :]


# ---------------------------------------------------------------- accepted


def test_register_bound_allowlisted_quote(net: Net) -> None:
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    enclave = net.new_enclave()
    operator = net.backend.accounts[1]
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, to_bytes20(operator.address))
    receipt = net.registry.register(quote, RUNNER, operator.address, ENDPOINT, enclave)

    node = net.registry.node(enclave.address)
    assert node is not None
    assert node.role == RUNNER
    assert node.operator == to_bytes20(operator.address)
    assert node.workload_id == WORKLOAD_ID
    assert node.endpoint == ENDPOINT
    assert not node.revoked
    block = net.backend.w3.eth.get_block(receipt["blockNumber"])
    assert node.registered_at == block["timestamp"]
    assert node.expires_at == block["timestamp"] + DAY
    assert net.registry.is_active(enclave.address)
    net.registry.require_active(enclave.address, RUNNER)
    assert net.registry.active_nodes(RUNNER) == [to_bytes20(enclave.address)]
    # the event carries the raw quote so anyone can re-verify it off-chain
    (event,) = net.registry.contract.events.NodeRegistered().process_receipt(
        receipt, errors=DISCARD
    )
    assert bytes(event.args.quote) == quote
    assert event.args.enclave == enclave.address


@pytest.mark.parametrize(
    "case_id", ["dcapqvl-tdx-v4", "dcapqvl-tdx-v5-outdated", "dcapqvl-tdx-v5-td15ex"]
)
def test_workload_id_matches_attestation_package_on_real_quotes(
    net: Net, tdx_fixtures: Path, case_id: str
) -> None:
    quote = _fixture_quote(tdx_fixtures, case_id)
    expected = workload_id(parse_quote(quote).body)
    assert net.registry.workload_id_of(quote) == expected


def test_register_real_fixture_quote_with_patched_report_data(net: Net, tdx_fixtures: Path) -> None:
    """A real v5 quote (DCAP signature not checked on-chain) re-bound to a fresh enclave."""
    from attestation.binding import ext_data, report_data_for

    quote = _fixture_quote(tdx_fixtures, "dcapqvl-tdx-v5-outdated")
    enclave = net.new_enclave()
    operator = net.backend.accounts[2]
    ext = ext_data(
        GATEWAY,
        to_bytes20(operator.address),
        net.backend.chain_id,
        to_bytes20(net.registry.address),
        ENDPOINT,
    )
    quote = _patch_report_data(quote, report_data_for(to_bytes20(enclave.address), ext))
    net.registry.allow_workload(GATEWAY, workload_id(parse_quote(quote).body), net.owner)
    net.registry.register(quote, GATEWAY, operator.address, ENDPOINT, enclave)
    net.registry.require_active(enclave.address, GATEWAY)


def test_register_with_permit_operator_pays(net: Net) -> None:
    net.registry.allow_workload(KMS, WORKLOAD_ID, net.owner)
    key = EnclaveKey.generate()  # never funded: the operator pays gas
    operator = net.backend.accounts[3]
    quote = net.bound_quote(key.address, KMS, to_bytes20(operator.address))
    deadline = net.backend.now() + 600
    net.registry.register_with_permit(
        quote,
        KMS,
        operator.address,
        ENDPOINT,
        enclave=key.address,
        sign_digest=key.sign_digest,
        deadline=deadline,
        sender=operator,
    )
    net.registry.require_active(key.address, KMS)
    # the permit is single-use: replaying it (same nonce consumed) fails
    assert int(net.registry.fn.permitNonces(to_checksum(key.address)).call()) == 1
    stale = key.sign_digest(net.registry.permit_digest(quote, 0, deadline))
    with _reverts("BadPermitSigner"):
        net.backend.transact(
            net.registry.fn.registerWithPermit(
                quote, KMS, operator.address, ENDPOINT, deadline, stale
            ),
            operator,
        )


def test_permit_from_another_key_or_expired_is_rejected(net: Net) -> None:
    net.registry.allow_workload(KMS, WORKLOAD_ID, net.owner)
    key, other = EnclaveKey.generate(), EnclaveKey.generate()
    operator = net.backend.accounts[3]
    quote = net.bound_quote(key.address, KMS, to_bytes20(operator.address))
    deadline = net.backend.now() + 600
    with _reverts("BadPermitSigner"):
        net.registry.register_with_permit(
            quote,
            KMS,
            operator.address,
            ENDPOINT,
            enclave=key.address,
            sign_digest=other.sign_digest,
            deadline=deadline,
            sender=operator,
        )
    with _reverts("PermitExpired"):
        net.registry.register_with_permit(
            quote,
            KMS,
            operator.address,
            ENDPOINT,
            enclave=key.address,
            sign_digest=key.sign_digest,
            deadline=net.backend.now() - 1,
            sender=operator,
        )


# ---------------------------------------------------------------- rejected registrations


def test_quote_bound_to_another_enclave_is_rejected(net: Net) -> None:
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    enclave, other = net.new_enclave(), net.new_enclave()
    operator = to_bytes20(net.backend.accounts[1].address)
    quote = net.bound_quote(to_bytes20(other.address), RUNNER, operator)
    with _reverts("ReportDataAddressMismatch"):
        net.registry.register(quote, RUNNER, operator, ENDPOINT, enclave)


@pytest.mark.parametrize("field", ["role", "operator", "chain_id", "registry", "endpoint"])
def test_quote_bound_to_other_ext_data_is_rejected(net: Net, field: str) -> None:
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    net.registry.allow_workload(GATEWAY, WORKLOAD_ID, net.owner)
    enclave = net.new_enclave()
    me = to_bytes20(enclave.address)
    operator = to_bytes20(net.backend.accounts[1].address)
    stranger = to_bytes20(net.backend.accounts[2].address)
    quote = {
        "role": lambda: net.bound_quote(me, GATEWAY, operator),
        "operator": lambda: net.bound_quote(me, RUNNER, stranger),
        "chain_id": lambda: net.bound_quote(me, RUNNER, operator, chain_id=1),
        "registry": lambda: net.bound_quote(me, RUNNER, operator, registry=stranger),
        "endpoint": lambda: net.bound_quote(me, RUNNER, operator, "https://evil.example"),
    }[field]()
    with _reverts("ExtDataMismatch"):
        net.registry.register(quote, RUNNER, operator, ENDPOINT, enclave)


def test_nonzero_report_data_padding_is_rejected(net: Net) -> None:
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    enclave = net.new_enclave()
    operator = to_bytes20(net.backend.accounts[1].address)
    quote = bytearray(net.bound_quote(to_bytes20(enclave.address), RUNNER, operator))
    quote[48 + 520 + 63] = 1
    with _reverts("ReportDataPaddingNotZero"):
        net.registry.register(bytes(quote), RUNNER, operator, ENDPOINT, enclave)


def test_non_allowlisted_workload_is_rejected(net: Net) -> None:
    net.registry.allow_workload(GATEWAY, WORKLOAD_ID, net.owner)  # allowed for another role only
    enclave = net.new_enclave()
    operator = to_bytes20(net.backend.accounts[1].address)
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, operator)
    with _reverts("WorkloadNotAllowed"):
        net.registry.register(quote, RUNNER, operator, ENDPOINT, enclave)
    other = Measurements(mr_td=bytes(47) + b"\x01")
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, operator, measurements=other)
    with _reverts("WorkloadNotAllowed"):
        net.registry.register(quote, RUNNER, operator, ENDPOINT, enclave)


def test_non_tdx_quotes_are_rejected(net: Net, tdx_fixtures: Path) -> None:
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    enclave = net.new_enclave()
    operator = to_bytes20(net.backend.accounts[1].address)
    sgx = _fixture_quote(tdx_fixtures, "dcapqvl-sgx-v3")
    with _reverts("UnsupportedQuoteVersion"):
        net.registry.register(sgx, RUNNER, operator, ENDPOINT, enclave)
    good = net.bound_quote(to_bytes20(enclave.address), RUNNER, operator)
    sgx_tee = good[:4] + bytes(4) + good[8:]  # v4 header with tee type SGX
    with _reverts("NotTdxQuote"):
        net.registry.register(sgx_tee, RUNNER, operator, ENDPOINT, enclave)
    with _reverts("QuoteTooShort"):
        net.registry.register(good[:600], RUNNER, operator, ENDPOINT, enclave)
    with _reverts("InvalidRole"):
        net.registry.register(good, 9, operator, ENDPOINT, enclave)


# ---------------------------------------------------------------- expiry, refresh, revocation


def test_registration_expires_and_refresh_extends_it(net: Net) -> None:
    enclave = net.register_node(RUNNER)
    net.backend.advance_time(DAY + 60)
    assert not net.registry.is_active(enclave.address)
    with _reverts("NodeExpired"):
        net.registry.require_active(enclave.address, RUNNER)
    assert net.registry.active_nodes(RUNNER) == []
    operator = net.backend.accounts[1]
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, to_bytes20(operator.address))
    net.registry.register(quote, RUNNER, operator.address, ENDPOINT, enclave)  # refresh
    net.registry.require_active(enclave.address, RUNNER)


def test_max_attestation_age_is_configurable(net: Net) -> None:
    net.registry.set_max_attestation_age(3600, net.owner)
    enclave = net.register_node(RUNNER)
    node = net.registry.node(enclave.address)
    assert node is not None
    assert node.expires_at - node.registered_at == 3600
    with _reverts("InvalidMaxAttestationAge"):
        net.registry.set_max_attestation_age(0, net.owner)


def test_revoked_enclave_is_inactive_at_once_and_cannot_reregister(net: Net) -> None:
    enclave = net.register_node(RUNNER)
    net.registry.revoke_enclave(enclave.address, net.owner)
    with _reverts("EnclaveRevoked"):
        net.registry.require_active(enclave.address, RUNNER)
    assert net.registry.active_nodes(RUNNER) == []
    operator = net.backend.accounts[1]
    quote = net.bound_quote(to_bytes20(enclave.address), RUNNER, to_bytes20(operator.address))
    with _reverts("EnclaveRevoked"):
        net.registry.register(quote, RUNNER, operator.address, ENDPOINT, enclave)


def test_disallowed_workload_deactivates_its_nodes_at_once(net: Net) -> None:
    enclave = net.register_node(RUNNER)
    net.registry.disallow_workload(RUNNER, WORKLOAD_ID, net.owner)
    with _reverts("WorkloadRevoked"):
        net.registry.require_active(enclave.address, RUNNER)
    assert not net.registry.is_active(enclave.address)


def test_wrong_role_and_role_change_are_rejected(net: Net) -> None:
    enclave = net.register_node(RUNNER)
    with _reverts("WrongRole"):
        net.registry.require_active(enclave.address, GATEWAY)
    net.registry.allow_workload(GATEWAY, WORKLOAD_ID, net.owner)
    operator = net.backend.accounts[1]
    quote = net.bound_quote(to_bytes20(enclave.address), GATEWAY, to_bytes20(operator.address))
    with _reverts("RoleMismatch"):
        net.registry.register(quote, GATEWAY, operator.address, ENDPOINT, enclave)
    with _reverts("NodeNotRegistered"):
        net.registry.require_active(net.backend.accounts[5].address, RUNNER)


def test_paged_listing_of_active_nodes(net: Net) -> None:
    nodes = [net.register_node(RUNNER) for _ in range(3)]
    net.register_node(GATEWAY)
    net.registry.revoke_enclave(nodes[1].address, net.owner)
    want = [to_bytes20(nodes[0].address), to_bytes20(nodes[2].address)]
    assert net.registry.active_nodes(RUNNER, page_size=1) == want
    assert net.registry.active_nodes(RUNNER, page_size=10) == want
    page, nxt = net.registry.fn.activeNodes(RUNNER, 0, 2).call()
    assert (len(page), nxt) == (1, 2)
    page, nxt = net.registry.fn.activeNodes(RUNNER, 1, 2**256 - 1).call()  # no overflow
    assert (len(page), nxt) == (1, 3)
    with _reverts("InvalidPageLimit"):
        net.backend.call(net.registry.fn.activeNodes(RUNNER, 0, 0))


# ---------------------------------------------------------------- governance


def test_governance_calls_from_non_owner_are_rejected(net: Net) -> None:
    stranger = net.backend.accounts[4]
    enclave = net.register_node(RUNNER)
    calls = [
        lambda: net.registry.allow_workload(RUNNER, b"\x01" * 32, stranger),
        lambda: net.registry.disallow_workload(RUNNER, WORKLOAD_ID, stranger),
        lambda: net.registry.revoke_enclave(enclave.address, stranger),
        lambda: net.registry.set_max_attestation_age(60, stranger),
        lambda: net.registry.set_kms_keys(b"\x02" * 33, [b"\x02" * 33], 1, stranger),
        lambda: net.registry.transfer_ownership(stranger.address, stranger),
    ]
    for call in calls:
        with _reverts("NotOwner"):
            call()
    net.registry.require_active(enclave.address, RUNNER)


def test_two_step_ownership_transfer(net: Net) -> None:
    new_owner, stranger = net.backend.accounts[5], net.backend.accounts[6]
    net.registry.transfer_ownership(new_owner.address, net.owner)
    assert net.registry.owner() == to_bytes20(net.owner.address)  # nothing changes yet
    with _reverts("NotPendingOwner"):
        net.registry.accept_ownership(stranger)
    net.registry.accept_ownership(new_owner)
    assert net.registry.owner() == to_bytes20(new_owner.address)
    with _reverts("NotOwner"):
        net.registry.allow_workload(RUNNER, WORKLOAD_ID, net.owner)
    net.registry.allow_workload(RUNNER, WORKLOAD_ID, new_owner)


def test_kms_keys(net: Net) -> None:
    shares = [bytes([2]) + bytes([i]) * 32 for i in range(1, 4)]
    net.registry.set_kms_keys(b"\x03" + b"\x09" * 32, shares, 2, net.owner)
    keys = net.registry.kms_keys()
    assert (keys.public_key, keys.public_shares, keys.threshold) == (
        b"\x03" + b"\x09" * 32,
        shares,
        2,
    )
    with _reverts("InvalidKmsKeys"):
        net.registry.set_kms_keys(b"\x03" * 33, shares, 4, net.owner)


def test_deployed_code_matches_artifact(net: Net) -> None:
    """Auditors can match the deployed bytecode to the committed artifact (no immutables)."""
    code = net.backend.w3.eth.get_code(net.registry.address)
    assert bytes(code) == load_artifact("NoxRegistry").deployed_bytecode
