"""The engine: one op (`execute`) or a transaction's ops in order (`run_ops`).

Pure and deterministic: no I/O, no clock, no randomness. Typing is checked by
`operators.output_types`; the semantics live in `_kernels`. A plan (kernel, output types,
operand bounds) is built once per (operator, operand types) and cached, since a runner sees
the same few combinations over and over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from nox.compute._kernels import Kernel, kernel
from nox.compute.exceptions import (
    ArityMismatch,
    DuplicateOutput,
    OperandMissing,
    TypeMismatch,
    ValueOutOfRange,
)
from nox.compute.operators import Operator, output_types, spec
from nox.compute.value import Value, check_computable
from nox.handles import Handle, ValueType


@dataclass(frozen=True, slots=True)
class _Plan:
    kernel: Kernel
    out_types: tuple[ValueType, ...]
    bounds: tuple[tuple[int, int], ...]  # (min, max) per operand


@cache
def _plan(op: Operator | int, type_codes: tuple[int, ...]) -> _Plan:
    # Keyed by plain ints (cheap to hash); raises, uncached, for ill-typed combinations.
    op = Operator.from_code(int(op))
    operand_types = tuple(ValueType.from_code(code) for code in type_codes)
    for vt in operand_types:
        check_computable(vt)
    outs = output_types(op, operand_types)
    value_type = operand_types[-1]  # select: a branch; otherwise all operands agree
    bits = value_type.bits if value_type.kind != "bool" else 1
    return _Plan(
        kernel=kernel(op, value_type.kind, bits),
        out_types=outs,
        bounds=tuple((vt.min_value, vt.max_value) for vt in operand_types),
    )


def execute(op: Operator | int, operands: Sequence[Value]) -> tuple[Value, ...]:
    """Compute one op; outputs in DESIGN §7's index order.

    PlaintextToEncrypted takes the event's value as its single operand (see
    `Value.from_word`) and returns it. Raises UnknownOperator, ArityMismatch, TypeMismatch,
    UnsupportedOperation, or ValueOutOfRange for an operand outside its type's range.
    """
    plan = _plan(op, tuple([v.type.code for v in operands]))
    raw = [v.value for v in operands]
    for x, (lo, hi) in zip(raw, plan.bounds, strict=True):
        if not lo <= x <= hi:
            raise ValueOutOfRange(f"operand of operator {int(op)} does not fit its type")
    return tuple(map(Value, plan.out_types, plan.kernel(*raw)))


@dataclass(frozen=True, slots=True)
class Op:
    """One op of a transaction, as the NoxCompute event describes it.

    `inputs` are the operand handles (32 bytes each, in operand order; empty for
    PlaintextToEncrypted), `outputs` the result handles in output-index order, `plaintext`
    the event's value for PlaintextToEncrypted (None otherwise).
    """

    operator: Operator
    inputs: tuple[bytes, ...]
    outputs: tuple[bytes, ...]
    plaintext: Value | None = None

    @classmethod
    def from_event(cls, operator: int, inputs: Sequence[bytes], outputs: Sequence[bytes]) -> Op:
        """The op of a NoxCompute `Operation(caller, operator, inputs, outputs)` event.

        For PlaintextToEncrypted the event's single input is the plaintext as a 32-byte word
        and the type is the result handle's; it becomes `plaintext` (see `Value.from_word`).
        Counts and types are checked by `run_ops`.
        """
        op = Operator.from_code(operator)
        if op is not Operator.PLAINTEXT_TO_ENCRYPTED:
            return cls(op, tuple(inputs), tuple(outputs))
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArityMismatch("PLAINTEXT_TO_ENCRYPTED has one plaintext word and one output")
        vt = Handle.from_bytes(outputs[0]).value_type
        return cls(op, (), tuple(outputs), Value.from_word(vt, inputs[0]))


def run_ops(ops: Iterable[Op], inputs: Mapping[bytes, Value]) -> dict[bytes, Value]:
    """Run a transaction's ops in order; return every output by handle, in production order.

    An op's input is a task input or an earlier op's output (no round trip). Checks, each
    raising before anything is returned (a task never yields a partial result): every input
    handle is known (OperandMissing), each value's type is its handle's type (TypeMismatch),
    the op is well typed, the output handles are as many as the op's outputs (ArityMismatch),
    carry the computed output types (TypeMismatch), and are new (DuplicateOutput).
    """
    produced: dict[bytes, Value] = {}
    for op in ops:
        s = spec(op.operator)
        if len(op.inputs) != s.handle_inputs:
            raise ArityMismatch(
                f"{s.operator.name} takes {s.handle_inputs} input handles, got {len(op.inputs)}"
            )
        if len(op.outputs) != s.outputs:
            raise ArityMismatch(
                f"{s.operator.name} has {s.outputs} output handles, got {len(op.outputs)}"
            )
        if s.operator is Operator.PLAINTEXT_TO_ENCRYPTED:
            if op.plaintext is None:
                raise ArityMismatch("PLAINTEXT_TO_ENCRYPTED needs the event's plaintext")
            operands: list[Value] = [op.plaintext]
        else:
            operands = []
            for h in op.inputs:
                v = produced.get(h)
                if v is None:
                    v = inputs.get(h)
                    if v is None:
                        raise OperandMissing(f"operand handle 0x{h.hex()} is not available")
                _check_handle_type(h, v.type)
                operands.append(v)
        results = execute(s.operator, operands)
        for h, v in zip(op.outputs, results, strict=True):
            _check_handle_type(h, v.type)
            if h in produced or h in inputs:
                raise DuplicateOutput(f"output handle 0x{h.hex()} already exists in this task")
            produced[h] = v
    return produced


def _check_handle_type(handle: bytes, vt: ValueType) -> None:
    if Handle.from_bytes(handle).type_code != vt.code:
        raise TypeMismatch(f"handle 0x{handle.hex()} is not of type {vt.code}")
