"""The engine's contract: operator table, typing rules, typed errors, run_ops."""

from __future__ import annotations

import itertools

import pytest
from compute_support import I8, NUMERIC, U8, run

import nox.compute
from nox.compute import (
    SPECS,
    ArityMismatch,
    DuplicateOutput,
    Op,
    OperandMissing,
    Operator,
    TypeMismatch,
    UnknownOperator,
    UnsupportedOperation,
    Value,
    ValueOutOfRange,
    execute,
    output_types,
    run_ops,
    spec,
)
from nox.errors import InvalidArgument, NotFound
from nox.handles import ADDRESS, BOOL, Handle, ValueType, fixed_bytes, int_, uint

OP = Operator
U256 = uint(256)
FIXED = tuple(fixed_bytes(n) for n in range(1, 33))

# Consensus-critical (hashed into result handles, same uint8 on-chain): the lead's interface
# sheet and docs/nox-reference.md §1.2.
WIRE_CODES = {
    "PLAINTEXT_TO_ENCRYPTED": 0,
    "ADD": 1,
    "SUB": 2,
    "MUL": 3,
    "DIV": 4,
    "SAFE_ADD": 5,
    "SAFE_SUB": 6,
    "SAFE_MUL": 7,
    "SAFE_DIV": 8,
    "SELECT": 9,
    "EQ": 10,
    "NE": 11,
    "LT": 12,
    "LE": 13,
    "GT": 14,
    "GE": 15,
    "TRANSFER": 16,
    "MINT": 17,
    "BURN": 18,
}

# DESIGN §7: (handle inputs, output names in index order).
SHAPES = {
    OP.PLAINTEXT_TO_ENCRYPTED: (0, ("result",)),
    **{op: (2, ("result",)) for op in (OP.ADD, OP.SUB, OP.MUL, OP.DIV)},
    **{
        op: (2, ("success", "result"))
        for op in (OP.SAFE_ADD, OP.SAFE_SUB, OP.SAFE_MUL, OP.SAFE_DIV)
    },
    **{op: (2, ("result",)) for op in (OP.EQ, OP.NE, OP.LT, OP.LE, OP.GT, OP.GE)},
    OP.SELECT: (3, ("result",)),
    OP.TRANSFER: (3, ("newBalanceFrom", "newBalanceTo", "transferred")),
    OP.MINT: (3, ("newBalanceTo", "newTotalSupply")),
    OP.BURN: (3, ("newBalanceFrom", "newTotalSupply", "burnt")),
}


def test_operator_codes_are_the_wire_codes() -> None:
    assert {op.name: op.value for op in Operator} == WIRE_CODES


def test_public_api() -> None:
    assert set(nox.compute.__all__) == {
        "SPECS", "ArityMismatch", "ComputeError", "DuplicateOutput", "Op", "OpSpec",
        "OperandMissing", "Operator", "TypeMismatch", "UnknownOperator",
        "UnsupportedOperation", "Value", "ValueOutOfRange", "execute", "output_types",
        "run_ops", "spec",
    }  # fmt: skip


@pytest.mark.parametrize("op", list(Operator), ids=lambda op: op.name)
def test_shapes_follow_design(op: Operator) -> None:
    s = spec(op)
    assert s is SPECS[op] is spec(int(op))
    assert (s.handle_inputs, s.output_names) == SHAPES[op]
    assert s.outputs == len(s.output_names)


@pytest.mark.parametrize("code", [19, 255, -1])
def test_unknown_operator_codes(code: int) -> None:
    with pytest.raises(UnknownOperator) as err:
        Operator.from_code(code)
    assert err.value.reason == "UNKNOWN_OPERATOR"
    assert isinstance(err.value, InvalidArgument)
    with pytest.raises(UnknownOperator):
        execute(code, [Value(U8, 1), Value(U8, 2)])


@pytest.mark.parametrize("vt", NUMERIC, ids=str)
def test_output_types_by_op(vt: ValueType) -> None:
    for op in (OP.ADD, OP.SUB, OP.MUL, OP.DIV):
        assert output_types(op, [vt, vt]) == (vt,)
    for op in (OP.SAFE_ADD, OP.SAFE_SUB, OP.SAFE_MUL, OP.SAFE_DIV):
        assert output_types(op, [vt, vt]) == (BOOL, vt)
    for op in (OP.EQ, OP.NE, OP.LT, OP.LE, OP.GT, OP.GE):
        assert output_types(op, [vt, vt]) == (BOOL,)
    assert output_types(OP.SELECT, [BOOL, vt, vt]) == (vt,)
    assert output_types(OP.PLAINTEXT_TO_ENCRYPTED, [vt]) == (vt,)
    if vt.is_signed:
        for op in (OP.TRANSFER, OP.MINT, OP.BURN):
            with pytest.raises(UnsupportedOperation):
                output_types(op, [vt, vt, vt])
    else:
        assert output_types(OP.TRANSFER, [vt] * 3) == (vt, vt, vt)
        assert output_types(OP.MINT, [vt] * 3) == (vt, vt)
        assert output_types(OP.BURN, [vt] * 3) == (vt, vt, vt)


def test_bool_supports_equality_and_select_only() -> None:
    assert output_types(OP.EQ, [BOOL, BOOL]) == (BOOL,)
    assert output_types(OP.NE, [BOOL, BOOL]) == (BOOL,)
    assert output_types(OP.SELECT, [BOOL, BOOL, BOOL]) == (BOOL,)
    assert output_types(OP.PLAINTEXT_TO_ENCRYPTED, [BOOL]) == (BOOL,)
    for op in (OP.ADD, OP.SAFE_ADD, OP.DIV, OP.LT, OP.GE):
        with pytest.raises(UnsupportedOperation) as err:
            execute(op, [Value(BOOL, True), Value(BOOL, False)])
        assert err.value.reason == "UNSUPPORTED_OPERATION"


@pytest.mark.parametrize("vt", [ValueType(2), ValueType(3)], ids=str)
def test_dynamic_types_are_not_computable(vt: ValueType) -> None:
    for op in (OP.EQ, OP.SELECT, OP.PLAINTEXT_TO_ENCRYPTED):
        with pytest.raises(UnsupportedOperation):
            output_types(op, [BOOL, vt, vt] if op is OP.SELECT else [vt] * spec(op).arity)
    with pytest.raises(UnsupportedOperation):
        Value.of(vt, 1)


@pytest.mark.parametrize("vt", [ADDRESS, fixed_bytes(1), fixed_bytes(20), fixed_bytes(32)], ids=str)
def test_address_and_fixed_bytes_support_selection_and_equality(vt: ValueType) -> None:
    """As in Solidity and NoxCompute: ==, != and select, no arithmetic or ordering."""
    x, y = Value.of(vt, vt.max_value), Value.of(vt, 1)
    assert execute(OP.EQ, [x, y]) == (Value(BOOL, False),)
    assert execute(OP.NE, [x, y]) == (Value(BOOL, True),)
    assert execute(OP.SELECT, [Value(BOOL, False), x, y]) == (y,)
    assert execute(OP.PLAINTEXT_TO_ENCRYPTED, [x]) == (x,)
    assert Value.from_plaintext(vt, x.to_plaintext()) == x
    assert x.to_plaintext() == b"\xff" * vt.byte_size
    for op in (OP.ADD, OP.SAFE_SUB, OP.LT, OP.GE):
        with pytest.raises(UnsupportedOperation):
            execute(op, [x, y])


@pytest.mark.parametrize(
    ("op", "types"),
    [
        (OP.ADD, [U8, I8]),
        (OP.ADD, [uint(16), U8]),
        (OP.SAFE_MUL, [int_(256), U256]),
        (OP.EQ, [BOOL, U8]),
        (OP.SELECT, [U8, U8, U8]),  # condition not bool
        (OP.SELECT, [BOOL, U8, I8]),  # branches differ
        (OP.TRANSFER, [U256, U256, uint(128)]),
    ],
    ids=str,
)
def test_type_mismatch(op: Operator, types: list[ValueType]) -> None:
    with pytest.raises(TypeMismatch) as err:
        execute(op, [Value(vt, 0) for vt in types])
    assert err.value.reason == "TYPE_MISMATCH"
    assert isinstance(err.value, InvalidArgument)


@pytest.mark.parametrize("op", list(Operator), ids=lambda op: op.name)
def test_wrong_operand_count(op: Operator) -> None:
    for n in range(5):
        if n == spec(op).arity:
            continue
        with pytest.raises(ArityMismatch):
            execute(op, [Value(U8, 1)] * n)


def test_operands_out_of_range_are_refused_without_their_value() -> None:
    secret = 987654321
    for op, operands in [
        (OP.ADD, [Value(U8, secret), Value(U8, 1)]),
        (OP.ADD, [Value(U8, 1), Value(U8, -1)]),
        (OP.LT, [Value(I8, 128), Value(I8, 0)]),
        (OP.SELECT, [Value(BOOL, 2), Value(U8, 1), Value(U8, 2)]),
    ]:
        with pytest.raises(ValueOutOfRange) as err:
            execute(op, operands)
        assert str(secret) not in str(err.value)
    with pytest.raises(ValueOutOfRange) as err2:
        Value.of(U8, secret)
    assert str(secret) not in str(err2.value)


def test_value_repr_hides_the_plaintext() -> None:
    v = Value.of(U256, 31337424242)
    assert "31337424242" not in repr(Op(OP.PLAINTEXT_TO_ENCRYPTED, (), (), v))
    assert "31337424242" not in repr(v)
    assert "31337424242" not in str(v)
    assert Value.of(BOOL, 1) == Value(BOOL, True)
    assert Value.of(BOOL, 1).value is True


def test_every_type_and_op_combination_computes() -> None:
    """All 19 ops over every type they are defined for."""
    computed = 0
    for vt, op in itertools.product((BOOL, ADDRESS, *FIXED, *NUMERIC), Operator):
        s = spec(op)
        types = [BOOL, vt, vt] if op is OP.SELECT else [vt] * s.arity
        if vt.kind not in s.kinds:
            continue
        outs = execute(op, [Value.of(t, 1) for t in types])
        assert tuple(v.type for v in outs) == output_types(op, types)
        computed += 1
    # All 19 per uintN, 16 per intN (no token ops), 4 (wrap, select, eq, ne) for bool,
    # address and each bytesN.
    assert computed == 32 * 19 + 32 * 16 + 4 + 4 + 32 * 4


def test_stored_plaintexts_are_decoded_strictly() -> None:
    assert Value.from_plaintext(int_(16), b"\xff\xfe") == Value(int_(16), -2)
    assert Value.from_plaintext(BOOL, b"\x01") == Value(BOOL, True)
    for vt, data in [(int_(16), b"\xff"), (U8, b"\x00\x01"), (BOOL, b"\x02")]:
        with pytest.raises(InvalidArgument):
            Value.from_plaintext(vt, data)


@pytest.mark.parametrize(
    ("vt", "word", "expected"),
    [
        (BOOL, bytes(32), False),
        (BOOL, bytes(31) + b"\x01", True),
        (uint(16), bytes(30) + b"\xff\xff", 0xFFFF),
        (int_(16), bytes(30) + b"\xff\xff", -1),  # reference library form (not extended)
        (int_(16), b"\xff" * 32, -1),  # sign-extended form
        (int_(16), bytes(30) + b"\x80\x00", -32768),
        (int_(16), bytes(30) + b"\x7f\xff", 32767),
        (U256, b"\xff" * 32, 2**256 - 1),
        (int_(256), b"\x80" + bytes(31), -(2**255)),
        (ADDRESS, bytes(12) + b"\xaa" * 20, int.from_bytes(b"\xaa" * 20, "big")),
        (fixed_bytes(4), b"\xde\xad\xbe\xef" + bytes(28), 0xDEADBEEF),  # left-aligned
    ],
)
def test_event_words(vt: ValueType, word: bytes, expected: int) -> None:
    assert Value.from_word(vt, word) == Value(vt, expected)


@pytest.mark.parametrize(
    ("vt", "word"),
    [
        (BOOL, bytes(31) + b"\x02"),
        (uint(16), bytes(29) + b"\x01\x00\x00"),
        (int_(16), b"\xff" * 30 + b"\x7f\xff"),  # extension does not match the sign
        (int_(16), bytes(29) + b"\x01\xff\xff"),
        (U8, bytes(31)),  # not 32 bytes
        (ADDRESS, bytes(11) + b"\x01" + bytes(20)),
        (fixed_bytes(4), bytes(31) + b"\x01"),  # bytesN are left-aligned
    ],
)
def test_event_words_that_do_not_fit(vt: ValueType, word: bytes) -> None:
    with pytest.raises(ValueOutOfRange):
        Value.from_word(vt, word)


# --- run_ops -------------------------------------------------------------------------------

_counter = itertools.count(1)


def handle(vt: ValueType) -> bytes:
    return Handle(next(_counter).to_bytes(26, "big"), 31337, vt.code).to_bytes()


def test_run_ops_feeds_outputs_forward() -> None:
    """A confidential transfer with a fee: safeSub, select on its flag, then transfer."""
    price, balance, fee_balance = handle(U256), handle(U256), handle(U256)
    ok, rest, chosen = handle(BOOL), handle(U256), handle(U256)
    new_from, new_to, moved = handle(U256), handle(U256), handle(U256)
    ops = [
        Op(OP.SAFE_SUB, (balance, price), (ok, rest)),
        Op(OP.SELECT, (ok, price, balance), (chosen,)),
        Op(OP.TRANSFER, (chosen, balance, fee_balance), (new_from, new_to, moved)),
    ]
    inputs = {h: Value.of(U256, x) for h, x in ((price, 30), (balance, 100), (fee_balance, 7))}
    out = run_ops(ops, inputs)
    assert list(out) == [ok, rest, chosen, new_from, new_to, moved]
    assert {h: v.value for h, v in out.items()} == {
        ok: True, rest: 70, chosen: 30, new_from: 70, new_to: 37, moved: 30
    }  # fmt: skip
    # The same ops, the engine called op by op: run_ops adds nothing but the plumbing.
    assert run(OP.SAFE_SUB, U256, 100, 30) == (True, 70)
    assert run(OP.TRANSFER, U256, 30, 100, 7) == (70, 37, 30)


def test_run_ops_plaintext_to_encrypted() -> None:
    out_h = handle(int_(16))
    v = Value.from_word(int_(16), bytes(30) + b"\xff\xfe")
    out = run_ops([Op(OP.PLAINTEXT_TO_ENCRYPTED, (), (out_h,), plaintext=v)], {})
    assert out == {out_h: Value(int_(16), -2)}
    with pytest.raises(ArityMismatch):
        run_ops([Op(OP.PLAINTEXT_TO_ENCRYPTED, (), (handle(U8),))], {})
    with pytest.raises(TypeMismatch):  # plaintext type is not the handle's
        run_ops([Op(OP.PLAINTEXT_TO_ENCRYPTED, (), (handle(U8),), plaintext=v)], {})


def test_ops_from_events() -> None:
    """NoxCompute's Operation event: PlaintextToEncrypted carries the word as its input."""
    out_h = handle(int_(16))
    word = (-2 % 2**256).to_bytes(32, "big")  # NoxCompute's canonical, sign-extended form
    op = Op.from_event(0, [word], [out_h])
    assert op == Op(OP.PLAINTEXT_TO_ENCRYPTED, (), (out_h,), Value(int_(16), -2))
    a, b, r = handle(U8), handle(U8), handle(U8)
    assert Op.from_event(1, [a, b], [r]) == Op(OP.ADD, (a, b), (r,))
    with pytest.raises(ArityMismatch):
        Op.from_event(0, [word, word], [out_h])
    with pytest.raises(ValueOutOfRange):
        Op.from_event(0, [b"\x01" + bytes(31)], [out_h])
    with pytest.raises(UnknownOperator):
        Op.from_event(19, [a, b], [r])


def test_run_ops_missing_operand() -> None:
    a, b = handle(U8), handle(U8)
    with pytest.raises(OperandMissing) as err:
        run_ops([Op(OP.ADD, (a, b), (handle(U8),))], {a: Value(U8, 1)})
    assert err.value.reason == "OPERAND_MISSING"
    assert isinstance(err.value, NotFound)


def test_run_ops_input_value_must_match_its_handle_type() -> None:
    a, b = handle(U8), handle(U8)
    with pytest.raises(TypeMismatch):
        run_ops([Op(OP.ADD, (a, b), (handle(U8),))], {a: Value(U8, 1), b: Value(I8, 1)})


def test_run_ops_output_handles_are_checked() -> None:
    a, b = handle(U8), handle(U8)
    inputs = {a: Value(U8, 1), b: Value(U8, 2)}
    with pytest.raises(TypeMismatch):  # eq yields bool, the handle says uint8
        run_ops([Op(OP.EQ, (a, b), (handle(U8),))], inputs)
    with pytest.raises(ArityMismatch):  # safeAdd has two outputs
        run_ops([Op(OP.SAFE_ADD, (a, b), (handle(U8),))], inputs)
    with pytest.raises(ArityMismatch):
        run_ops([Op(OP.ADD, (a,), (handle(U8),))], inputs)
    out = handle(U8)
    with pytest.raises(DuplicateOutput):
        run_ops([Op(OP.ADD, (a, b), (out,)), Op(OP.SUB, (a, b), (out,))], inputs)
    with pytest.raises(DuplicateOutput):
        run_ops([Op(OP.ADD, (a, b), (a,))], inputs)
