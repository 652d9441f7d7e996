"""The sample ConfidentialToken on both backends: gateway-proven amounts, token ops, ACL."""

from __future__ import annotations

from contracts_support import Net, make_net

from attestation.providers.simulated import SimulatedTdx
from nox.chain.artifacts import load_artifact
from nox.chain.backend import ChainBackend
from nox.chain.contracts import to_bytes20
from nox.crypto.keys import EnclaveKey
from nox.handles import ValueType, new_input_handle

GATEWAY, U256 = 3, 35
MINT, TRANSFER = 17, 16


def test_mint_and_transfer_emit_token_ops_and_grant_holders(
    backend: ChainBackend, sim_tdx: SimulatedTdx
) -> None:
    net: Net = make_net(backend, sim_tdx, with_token=True)
    assert net.deployment.token is not None
    token = backend.contract(load_artifact("ConfidentialToken"), net.deployment.token)
    gateway = EnclaveKey.from_bytes(bytes(net.register_node(GATEWAY).key))
    owner, alice, bob = net.owner, backend.accounts[2], backend.accounts[3]

    def proof_for(sender: str) -> tuple[bytes, bytes]:
        handle = new_input_handle(backend.chain_id, ValueType.from_code(U256)).to_bytes()
        proof = net.compute.make_input_proof(
            handle, sender, token.address, backend.now(), gateway.sign_digest
        )
        return handle, proof

    amount, proof = proof_for(owner.address)
    receipt = backend.transact(token.functions.mint(alice.address, amount, proof), owner)
    ops = [op for op in net.compute.operations(receipt) if op.operator == MINT]
    assert len(ops) == 1
    assert ops[0].inputs[0] == amount
    alice_balance = bytes(token.functions.balanceOf(alice.address).call())
    assert alice_balance == ops[0].outputs[0]
    assert net.acl.is_viewer(alice_balance, alice.address)
    assert not net.acl.is_viewer(alice_balance, bob.address)

    amount, proof = proof_for(alice.address)
    receipt = backend.transact(token.functions.transfer(bob.address, amount, proof), alice)
    (op,) = [op for op in net.compute.operations(receipt) if op.operator == TRANSFER]
    assert op.inputs == [amount, alice_balance, op.inputs[2]]
    assert op.caller == to_bytes20(token.address)
    bob_balance = bytes(token.functions.balanceOf(bob.address).call())
    assert bob_balance == op.outputs[1]
    assert net.acl.is_viewer(bob_balance, bob.address)
    assert net.acl.is_viewer(op.outputs[2], bob.address)  # the transferred amount
