"""Grouping logs into transaction messages, and PlaintextToEncrypted words (no I/O)."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from hypothesis import given
from hypothesis import strategies as st

from nox.handles import ValueType, decode_plaintext
from nox.ingestor import BlockRef, OperationLog, build_messages, plaintext_of
from nox.ingestor.exceptions import EventMalformed

COMPUTE = b"\x11" * 20
CALLER = b"\x22" * 20


def _handle(n: int, type_code: int = 35) -> bytes:
    return n.to_bytes(26, "big") + (31337).to_bytes(4, "big") + bytes([type_code, 0])


def _log(block: int, tx: int, index: int, op: int = 1, ins: int = 2) -> OperationLog:
    return OperationLog(
        block_number=block,
        block_hash=bytes([block]) * 32,
        tx_hash=bytes([tx]) * 32,
        log_index=index,
        caller=CALLER,
        operator=op,
        inputs=tuple(_handle(1000 + i) for i in range(ins)),
        outputs=(_handle(block * 100 + index),),
    )


def test_groups_per_transaction_in_log_order() -> None:
    blocks = {n: BlockRef(n, bytes([n]) * 32, 1_700_000_000 + n) for n in (5, 6)}
    # shuffled input: two transactions in block 5, one in block 6
    logs = [_log(6, 9, 0), _log(5, 2, 3), _log(5, 1, 0), _log(5, 2, 2), _log(5, 1, 1)]
    msgs = build_messages(logs, blocks, chain_id=31337, compute_address=COMPUTE)
    assert [(m.block_number, m.transaction_hash[0]) for m in msgs] == [(5, 1), (5, 2), (6, 9)]
    assert [[op.log_index for op in m.operations] for m in msgs] == [[0, 1], [2, 3], [0]]
    first = msgs[0]
    assert first.block_hash == blocks[5].hash
    assert first.block_timestamp == blocks[5].timestamp
    assert first.compute_address == COMPUTE
    assert list(first.operations[0].input_handles) == list(logs[2].inputs)


def test_log_from_a_replaced_block_is_refused() -> None:
    blocks = {5: BlockRef(5, b"\xee" * 32, 0)}  # the block was re-mined since the logs were read
    with pytest.raises(EventMalformed):
        build_messages([_log(5, 1, 0)], blocks, chain_id=31337, compute_address=COMPUTE)


def test_plaintext_to_encrypted_carries_the_value_not_an_input() -> None:
    word = (7).to_bytes(32, "big")
    log = OperationLog(5, bytes([5]) * 32, b"\x01" * 32, 0, CALLER, 0, (word,), (_handle(1, 4),))
    [msg] = build_messages(
        [log], {5: BlockRef(5, bytes([5]) * 32, 0)}, chain_id=31337, compute_address=COMPUTE
    )
    op = msg.operations[0]
    assert op.operator == 0
    assert op.plaintext == b"\x07"
    assert list(op.input_handles) == []


@given(st.integers(min_value=1, max_value=32), st.data())
def test_plaintext_word_matches_the_abi_encoding(size: int, data: st.DataObject) -> None:
    """Differential against eth_abi: the ABI word of a value of each type decodes back."""
    kind = data.draw(st.sampled_from(["uint", "int", "bytes"]))
    if kind == "uint":
        vt, abi_type = ValueType.from_code(3 + size), f"uint{8 * size}"
        value: int | bytes = data.draw(st.integers(0, 2 ** (8 * size) - 1))
    elif kind == "int":
        vt, abi_type = ValueType.from_code(35 + size), f"int{8 * size}"
        value = data.draw(st.integers(-(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1))
    else:
        vt, abi_type = ValueType.from_code(67 + size), f"bytes{size}"
        value = data.draw(st.binary(min_size=size, max_size=size))
    word = abi_encode([abi_type], [value])
    plaintext = plaintext_of(word, _handle(1, vt.code))
    assert len(plaintext) == vt.byte_size
    assert decode_plaintext(vt, plaintext) == value


@pytest.mark.parametrize(("abi_type", "value", "code"), [("bool", True, 0), ("bool", False, 0)])
def test_plaintext_of_bool(abi_type: str, value: bool, code: int) -> None:
    word = abi_encode([abi_type], [value])
    assert (
        decode_plaintext(ValueType.from_code(code), plaintext_of(word, _handle(1, code))) is value
    )


def test_plaintext_of_address() -> None:
    address = "0x" + "ab" * 20
    word = abi_encode(["address"], [address])
    assert plaintext_of(word, _handle(1, 1)) == bytes.fromhex("ab" * 20)
