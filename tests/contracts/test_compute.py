"""NoxCompute on both backends: result handles (differential against nox.handles), type and
ACL checks, events, and input-proof validation."""

from __future__ import annotations

import pytest
from contracts_support import Harness, Net
from eth_account.signers.local import LocalAccount
from web3.logs import DISCARD

from nox.chain.contracts import to_bytes20, to_checksum
from nox.chain.exceptions import ContractReverted
from nox.crypto.keys import EnclaveKey
from nox.handles import BOOL, Handle, ValueType, new_input_handle, result_handle

GATEWAY = 3
U8, U64, U256, I16, ADDR = 4, 11, 35, 37, 1

# operator -> (operand types, output types), DESIGN §7 and the interface sheet's order
BIN = {1: "add", 2: "sub", 3: "mul", 4: "div"}
SAFE = {5: "safeAdd", 6: "safeSub", 7: "safeMul", 8: "safeDiv"}
CMP = {10: "eq", 11: "ne", 12: "lt", 13: "le", 14: "gt", 15: "ge"}


def _reverts(name: str) -> pytest.RaisesExc[ContractReverted]:
    return pytest.raises(ContractReverted, match=rf"^CONTRACT_REVERTED: {name}\(")


def _signature(op: int, t: int) -> tuple[list[int], list[int]]:
    if op in BIN:
        return [t, t], [t]
    if op in SAFE:
        return [t, t], [BOOL.code, t]
    if op in CMP:
        return [t, t], [BOOL.code]
    if op == 9:
        return [BOOL.code, t, t], [t]
    if op in (16, 18):
        return [t, t, t], [t, t, t]
    if op == 17:
        return [t, t, t], [t, t]
    raise AssertionError(op)


@pytest.fixture
def harness(net: Net) -> Harness:
    return Harness(net)


@pytest.mark.parametrize("type_code", [U8, U256, I16])
def test_result_handles_match_python_for_every_op_and_output(
    net: Net, harness: Harness, type_code: int
) -> None:
    compute = to_bytes20(net.compute.address)
    caller = to_bytes20(harness.address)
    ops = [*BIN, *SAFE, 9, *CMP]
    if ValueType.from_code(type_code).kind == "uint":
        ops += [16, 17, 18]
    for op in ops:
        in_types, out_types = _signature(op, type_code)
        inputs = [
            harness.encrypt(1 if t == BOOL.code else 3 + i, t) for i, t in enumerate(in_types)
        ]
        outputs, _gas, block = harness.run(op, inputs)
        assert len(outputs) == len(out_types), op
        for index, (got, t) in enumerate(zip(outputs, out_types, strict=True)):
            want = result_handle(
                op,
                inputs,
                compute,
                caller,
                block["timestamp"],
                index,
                net.backend.chain_id,
                ValueType.from_code(t),
            )
            assert got == want.to_bytes(), (op, index)
            assert Handle.from_bytes(got).type_code == t


def test_plaintext_to_encrypted_handle_and_event(net: Net) -> None:
    eoa = net.backend.accounts[2]
    word = (300).to_bytes(32, "big")
    receipt = net.backend.transact(net.compute.fn.plaintextToEncrypted(word, 5), eoa)
    (op,) = net.compute.operations(receipt)
    block = net.backend.w3.eth.get_block(receipt["blockNumber"])
    want = result_handle(
        0,
        [word],
        to_bytes20(net.compute.address),
        to_bytes20(eoa.address),
        int(block["timestamp"]),
        0,
        net.backend.chain_id,
        ValueType.from_code(5),
    )
    assert (op.operator, op.inputs, op.outputs) == (0, [word], [want.to_bytes()])
    assert op.caller == to_bytes20(eoa.address)
    for bad_value, t in [(256, U8), (2, BOOL.code), (2**160, ADDR), (2**15, I16)]:
        with _reverts("PlaintextOutOfRange"):
            net.backend.transact(
                net.compute.fn.plaintextToEncrypted(bad_value.to_bytes(32, "big"), t), eoa
            )
    minus_one = (2**256 - 1).to_bytes(32, "big")  # int16 -1, sign-extended: canonical
    net.backend.transact(net.compute.fn.plaintextToEncrypted(minus_one, I16), eoa)


def test_operation_events_carry_inputs_and_outputs_in_order(net: Net, harness: Harness) -> None:
    a, b, c = (harness.encrypt(v, U64) for v in (5, 9, 100))
    receipt = net.backend.transact(harness.fn.run(16, [a, b, c]))
    (op,) = net.compute.operations(receipt)
    (measured,) = harness.contract.events.Measured().process_receipt(receipt, errors=DISCARD)
    assert op.operator == 16
    assert op.caller == to_bytes20(harness.address)
    assert op.inputs == [a, b, c]
    assert op.outputs == [bytes(h) for h in measured.args.outputs]
    assert net.compute.operation_events(receipt["blockNumber"], receipt["blockNumber"]) == [op]


def test_operand_type_checks(net: Net, harness: Harness) -> None:
    b1, b2 = harness.encrypt(1, BOOL.code), harness.encrypt(0, BOOL.code)
    u8, u64 = harness.encrypt(1, U8), harness.encrypt(1, U64)
    i16 = harness.encrypt(1, I16)
    with _reverts("UnsupportedType"):
        harness.run(1, [b1, b2])  # arithmetic on bool
    with _reverts("TypeMismatch"):
        harness.run(1, [u8, u64])
    with _reverts("UnsupportedType"):
        harness.run(12, [b1, b2])  # ordering on bool
    harness.run(10, [b1, b2])  # eq on bool is fine
    with _reverts("UnsupportedType"):
        harness.run(9, [u8, u64, u64])  # condition must be bool
    with _reverts("TypeMismatch"):
        harness.run(9, [b1, u8, u64])
    with _reverts("UnsupportedType"):
        harness.run(16, [i16, i16, i16])  # token ops: uintN only
    with _reverts("TypeMismatch"):
        harness.run(17, [u64, u64, u8])


def test_operands_need_acl_access_and_this_chain(net: Net, harness: Harness) -> None:
    mine = harness.encrypt(1, U64)
    foreign = new_input_handle(net.backend.chain_id, ValueType.from_code(U64)).to_bytes()
    with _reverts("NotAllowed"):
        harness.run(1, [mine, foreign])
    other_chain = new_input_handle(1, ValueType.from_code(U64)).to_bytes()
    with _reverts("WrongChain"):
        harness.run(1, [mine, other_chain])
    bad_version = mine[:31] + b"\x01"
    with _reverts("UnsupportedHandleVersion"):
        harness.run(1, [mine, bad_version])


# ---------------------------------------------------------------- input proofs


def _gateway_key(account: LocalAccount) -> EnclaveKey:
    return EnclaveKey.from_bytes(bytes(account.key))


def _proof(net: Net, key: EnclaveKey, handle: bytes, owner: str, app: str, created: int) -> bytes:
    return net.compute.make_input_proof(handle, owner, app, created, key.sign_digest)


def test_valid_input_proof_grants_the_app_transient_access(net: Net, harness: Harness) -> None:
    gateway = _gateway_key(net.register_node(GATEWAY))
    user = net.backend.accounts[2]
    handle = new_input_handle(net.backend.chain_id, ValueType.from_code(U256)).to_bytes()
    proof = _proof(net, gateway, handle, user.address, harness.address, net.backend.now())
    receipt = net.backend.transact(harness.fn.validate(handle, proof, U256), user)
    (event,) = harness.contract.events.Validated().process_receipt(receipt, errors=DISCARD)
    assert (bytes(event.args.handle), event.args.allowedInTx) == (handle, True)
    assert not net.acl.is_allowed(handle, harness.address)  # transient only


def test_input_proofs_rejected(net: Net, harness: Harness) -> None:
    gateway_account = net.register_node(GATEWAY)
    gateway = _gateway_key(gateway_account)
    user, other = net.backend.accounts[2], net.backend.accounts[3]
    handle = new_input_handle(net.backend.chain_id, ValueType.from_code(U256)).to_bytes()
    now = net.backend.now() - 10  # a flipped low bit of createdAt keeps it in the past

    def attempt(proof: bytes, sender: LocalAccount = user, type_code: int = U256) -> None:
        net.backend.transact(harness.fn.validate(handle, proof, type_code), sender)

    with _reverts("NodeNotRegistered"):  # signer is not a registered gateway
        attempt(_proof(net, EnclaveKey.generate(), handle, user.address, harness.address, now))
    with _reverts("ProofExpired"):
        attempt(_proof(net, gateway, handle, user.address, harness.address, now - 3700))
    with _reverts("ProofNotYetValid"):
        attempt(_proof(net, gateway, handle, user.address, harness.address, now + 3600))
    with _reverts("ProofAppMismatch"):  # proof made for another app
        attempt(_proof(net, gateway, handle, user.address, other.address, now))
    with _reverts("ProofOwnerMismatch"):  # proof of another user, replayed by `other`
        attempt(_proof(net, gateway, handle, user.address, harness.address, now), sender=other)
    with _reverts("HandleTypeMismatch"):
        attempt(_proof(net, gateway, handle, user.address, harness.address, now), type_code=U64)
    with _reverts("MalformedProof"):
        attempt(_proof(net, gateway, handle, user.address, harness.address, now)[:-1])
    tampered = bytearray(_proof(net, gateway, handle, user.address, harness.address, now))
    tampered[40 + 31] ^= 1  # createdAt changed after signing: another signer recovers
    with _reverts("NodeNotRegistered"):
        attempt(bytes(tampered))

    node_key = EnclaveKey.from_bytes(bytes(gateway_account.key))
    assert node_key.address == to_bytes20(gateway_account.address)
    # a gateway that is not a gateway (runner role) is rejected
    runner = _gateway_key(net.register_node(2))
    with _reverts("WrongRole"):
        attempt(_proof(net, runner, handle, user.address, harness.address, now))
    # revoked gateway
    net.registry.revoke_enclave(to_checksum(gateway.address), net.owner)
    with _reverts("EnclaveRevoked"):
        attempt(_proof(net, gateway, handle, user.address, harness.address, now))


def test_input_proof_from_expired_gateway_is_rejected(net: Net, harness: Harness) -> None:
    gateway = _gateway_key(net.register_node(GATEWAY))
    net.backend.advance_time(24 * 3600 + 10)
    user = net.backend.accounts[2]
    handle = new_input_handle(net.backend.chain_id, ValueType.from_code(U256)).to_bytes()
    proof = _proof(net, gateway, handle, user.address, harness.address, net.backend.now())
    with _reverts("NodeExpired"):
        net.backend.transact(harness.fn.validate(handle, proof, U256), user)
