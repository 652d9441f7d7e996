"""The operators of DESIGN §7: codes, operand and output counts, and typing rules.

The codes are consensus-critical (hashed into result handles, the same `uint8` in Solidity),
so they are written out, never generated. The contracts, the ingestor and the runner share
this module: `output_types` is the one place that decides whether an op is well typed and
which types its outputs have, in output-index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from nox.compute.exceptions import (
    ArityMismatch,
    TypeMismatch,
    UnknownOperator,
    UnsupportedOperation,
)
from nox.handles import BOOL, ValueType


class Operator(IntEnum):
    """Operator codes, exactly as NoxCompute emits them."""

    PLAINTEXT_TO_ENCRYPTED = 0
    ADD = 1
    SUB = 2
    MUL = 3
    DIV = 4
    SAFE_ADD = 5
    SAFE_SUB = 6
    SAFE_MUL = 7
    SAFE_DIV = 8
    SELECT = 9
    EQ = 10
    NE = 11
    LT = 12
    LE = 13
    GT = 14
    GE = 15
    TRANSFER = 16
    MINT = 17
    BURN = 18

    @classmethod
    def from_code(cls, code: int) -> Operator:
        """The operator for a wire code; raises UnknownOperator outside 0..18."""
        try:
            return cls(code)
        except ValueError:
            raise UnknownOperator(f"unknown operator code {code}") from None


# Operand kinds an op accepts (ValueType.kind); everything else is UnsupportedOperation.
# Arithmetic and ordering: uintN/intN. Wrapping, selection and (in)equality also take bool,
# address and bytesN, as in Solidity (NoxCompute accepts select/eq/ne on them); the dynamic
# bytes/string are never computed on.
_NUMERIC = frozenset({"uint", "int"})
_EQUATABLE = frozenset({"bool", "uint", "int", "address", "fixed_bytes"})
_TOKEN = frozenset({"uint"})


@dataclass(frozen=True, slots=True)
class OpSpec:
    """Shape of one operator.

    `arity` is the number of values the engine takes; `handle_inputs` the number of operand
    handles (0 for PlaintextToEncrypted: its event's single input is the plaintext word, see
    `Op.from_event`); `outputs` the number of result handles, in DESIGN §7's order;
    `output_names` names them; `kinds` the operand kinds it is defined for (for select: the
    branches' kind; the condition is always bool).
    """

    operator: Operator
    arity: int
    handle_inputs: int
    outputs: int
    output_names: tuple[str, ...]
    kinds: frozenset[str]


def _spec(op: Operator, arity: int, outs: tuple[str, ...], kinds: frozenset[str]) -> OpSpec:
    handle_inputs = 0 if op is Operator.PLAINTEXT_TO_ENCRYPTED else arity
    return OpSpec(op, arity, handle_inputs, len(outs), outs, kinds)


_O = Operator
SPECS: dict[Operator, OpSpec] = {
    s.operator: s
    for s in (
        _spec(_O.PLAINTEXT_TO_ENCRYPTED, 1, ("result",), _EQUATABLE),
        _spec(_O.ADD, 2, ("result",), _NUMERIC),
        _spec(_O.SUB, 2, ("result",), _NUMERIC),
        _spec(_O.MUL, 2, ("result",), _NUMERIC),
        _spec(_O.DIV, 2, ("result",), _NUMERIC),
        _spec(_O.SAFE_ADD, 2, ("success", "result"), _NUMERIC),
        _spec(_O.SAFE_SUB, 2, ("success", "result"), _NUMERIC),
        _spec(_O.SAFE_MUL, 2, ("success", "result"), _NUMERIC),
        _spec(_O.SAFE_DIV, 2, ("success", "result"), _NUMERIC),
        _spec(_O.SELECT, 3, ("result",), _EQUATABLE),
        _spec(_O.EQ, 2, ("result",), _EQUATABLE),
        _spec(_O.NE, 2, ("result",), _EQUATABLE),
        # Ordering is for numbers only (Solidity has none on bool).
        _spec(_O.LT, 2, ("result",), _NUMERIC),
        _spec(_O.LE, 2, ("result",), _NUMERIC),
        _spec(_O.GT, 2, ("result",), _NUMERIC),
        _spec(_O.GE, 2, ("result",), _NUMERIC),
        _spec(_O.TRANSFER, 3, ("newBalanceFrom", "newBalanceTo", "transferred"), _TOKEN),
        _spec(_O.MINT, 3, ("newBalanceTo", "newTotalSupply"), _TOKEN),
        _spec(_O.BURN, 3, ("newBalanceFrom", "newTotalSupply", "burnt"), _TOKEN),
    )
}

_SAFE = frozenset({_O.SAFE_ADD, _O.SAFE_SUB, _O.SAFE_MUL, _O.SAFE_DIV})
_COMPARISONS = frozenset({_O.EQ, _O.NE, _O.LT, _O.LE, _O.GT, _O.GE})


def spec(op: Operator | int) -> OpSpec:
    """The shape of an operator given as enum member or wire code."""
    return SPECS[Operator.from_code(int(op))]


def output_types(op: Operator | int, operand_types: Sequence[ValueType]) -> tuple[ValueType, ...]:
    """Check an op's operand types and return its output types in output-index order.

    All operands share one type, except select (condition bool, both branches one type).
    Raises ArityMismatch, TypeMismatch or UnsupportedOperation; messages name types only.
    """
    s = spec(op)
    name = s.operator.name
    if len(operand_types) != s.arity:
        raise ArityMismatch(f"{name} takes {s.arity} operands, got {len(operand_types)}")
    if s.operator is Operator.SELECT:
        condition, if_true, if_false = operand_types
        if condition != BOOL:
            raise TypeMismatch(f"SELECT condition must be bool, got type {condition.code}")
        if if_true != if_false:
            raise TypeMismatch(
                f"SELECT branches differ: type {if_true.code} and type {if_false.code}"
            )
        vt = if_true
    else:
        vt = operand_types[0]
        for other in operand_types[1:]:
            if other != vt:
                raise TypeMismatch(f"{name} operands differ: type {vt.code} and type {other.code}")
    if vt.kind not in s.kinds:
        raise UnsupportedOperation(f"{name} is not defined for {vt.kind} (type {vt.code})")
    if s.operator in _SAFE:
        return (BOOL, vt)
    if s.operator in _COMPARISONS:
        return (BOOL,)
    return (vt,) * s.outputs
