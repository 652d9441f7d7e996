"""ACL on both backends: admin, transient (EIP-1153), viewer and public, per the seed's table."""

from __future__ import annotations

import pytest
from contracts_support import Harness, Net
from web3.logs import DISCARD

from nox.chain.exceptions import ContractReverted

UINT64 = 3 + 64 // 8
ZERO = "0x" + "00" * 20


def _reverts(name: str) -> pytest.RaisesExc[ContractReverted]:
    return pytest.raises(ContractReverted, match=rf"^CONTRACT_REVERTED: {name}\(")


@pytest.fixture
def harness(net: Net) -> Harness:
    return Harness(net)


def test_result_access_is_transient_for_the_caller_only(net: Net) -> None:
    eoa = net.backend.accounts[2]
    receipt = net.backend.transact(net.compute.fn.plaintextToEncrypted(b"\x00" * 32, UINT64), eoa)
    (op,) = net.compute.operations(receipt)
    (handle,) = op.outputs
    # the transaction is over: its transient grant is gone, nothing persistent was granted
    assert not net.acl.is_allowed(handle, eoa.address)
    with _reverts("NotAllowed"):
        net.acl.allow(handle, eoa.address, eoa)


def test_transient_grant_works_within_the_transaction_only(net: Net, harness: Harness) -> None:
    handle = harness.encrypt(7, UINT64)
    other = net.backend.accounts[3].address
    assert harness.fn.transientThenUse(handle, other).call() is True  # same call: allowed
    net.backend.transact(harness.fn.transientThenUse(handle, other))
    assert not net.acl.is_allowed(handle, other)  # next transaction: gone
    assert not net.acl.is_viewer(handle, other)  # transient never makes a viewer


def test_admin_grants_and_viewer_semantics(net: Net, harness: Harness) -> None:
    handle = harness.encrypt(7, UINT64)
    admin, viewer, stranger = (
        net.backend.accounts[2],
        net.backend.accounts[3],
        net.backend.accounts[4],
    )
    assert net.acl.is_allowed(handle, harness.address)
    assert not net.acl.is_allowed(handle, admin.address)
    net.backend.transact(harness.fn.share(handle, admin.address))
    assert net.acl.is_allowed(handle, admin.address)
    assert net.acl.is_viewer(handle, admin.address)  # persistent admin counts as viewer

    net.acl.add_viewer(handle, viewer.address, admin)
    assert net.acl.is_viewer(handle, viewer.address)
    assert not net.acl.is_allowed(handle, viewer.address)  # a viewer cannot use the handle
    with _reverts("NotAllowed"):
        net.acl.allow(handle, stranger.address, viewer)
    with _reverts("NotAllowed"):
        net.acl.add_viewer(handle, stranger.address, viewer)
    with _reverts("NotAllowed"):
        net.acl.allow_transient(handle, stranger.address, stranger)
    with _reverts("ZeroAddress"):
        net.acl.allow(handle, ZERO, admin)
    with _reverts("ZeroAddress"):
        net.acl.add_viewer(handle, ZERO, admin)

    assert not net.acl.is_publicly_decryptable(handle)
    assert not net.acl.is_viewer(handle, stranger.address)
    with _reverts("NotAllowed"):
        net.acl.allow_public_decryption(handle, stranger)
    net.acl.allow_public_decryption(handle, admin)
    assert net.acl.is_publicly_decryptable(handle)
    assert net.acl.is_viewer(handle, stranger.address)  # public: anyone may decrypt
    assert not net.acl.is_allowed(handle, stranger.address)  # ...but not use it


def test_acl_events(net: Net, harness: Harness) -> None:
    handle = harness.encrypt(1, UINT64)
    admin = net.backend.accounts[2]
    net.backend.transact(harness.fn.share(handle, admin.address))
    receipt = net.acl.add_viewer(handle, net.backend.accounts[3].address, admin)
    (event,) = net.acl.contract.events.ViewerAdded().process_receipt(receipt, errors=DISCARD)
    assert (bytes(event.args.handle), event.args.sender) == (handle, admin.address)


def test_only_compute_may_grant_result_access(net: Net) -> None:
    eoa = net.backend.accounts[2]
    h = b"\x01" * 32
    with _reverts("OnlyCompute"):
        net.backend.transact(net.acl.fn.grantTransient(h, eoa.address), eoa)
    with _reverts("OnlyCompute"):
        net.backend.transact(net.acl.fn.computeAccess(eoa.address, [], [h]), eoa)
    with _reverts("ComputeAlreadySet"):
        net.backend.transact(net.acl.fn.setCompute(eoa.address), net.owner)
    with _reverts("OnlyDeployer"):
        net.backend.transact(net.acl.fn.setCompute(eoa.address), eoa)
