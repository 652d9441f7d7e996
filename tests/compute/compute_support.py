"""Helpers shared by the compute tests (types, a raw-value front end to the engine)."""

from __future__ import annotations

from nox.compute import Operator, Value, execute
from nox.handles import BOOL, ValueType, int_, uint

WIDTHS = tuple(range(8, 257, 8))
UINTS = tuple(uint(n) for n in WIDTHS)
INTS = tuple(int_(n) for n in WIDTHS)
NUMERIC = UINTS + INTS
U8, I8 = uint(8), int_(8)


def run(op: Operator, vt: ValueType, *xs: int | bool) -> tuple[int | bool, ...]:
    """Execute `op` on operands all of type `vt` (select: first operand bool); raw outputs."""
    types = [BOOL, vt, vt] if op is Operator.SELECT else [vt] * len(xs)
    return tuple(
        v.value for v in execute(op, [Value.of(t, x) for t, x in zip(types, xs, strict=True)])
    )


def boundaries(vt: ValueType) -> tuple[int, ...]:
    """Where wrapping, overflow and sign bugs live: 0, 1, 2, MAX−1, MAX, 2^(N/2) (whose
    square is the first product that wraps) and, for intN, MIN, MIN+1, −1, −2, −2^(N/2)
    (so the cross product holds MIN / −1). Kept small: each pair costs EVM time."""
    lo, hi = vt.min_value, vt.max_value
    k = 1 << (vt.bits // 2)
    vals = {0, 1, 2, k, hi - 1, hi}
    if vt.is_signed:
        vals |= {lo, lo + 1, -k, -2, -1}
    return tuple(sorted(v for v in vals if lo <= v <= hi))
