"""Per-type kernels: DESIGN §7's semantics on plain Python ints.

Each kernel is a closure specialised for one (operator, type) with the type's bounds and
masks bound in, taking and returning raw numbers (ints held as their mathematical value,
bools as bool). This is the runner's hot loop, so no kernel allocates beyond its result
tuple and none looks anything up at call time.

Semantics (N = bits, MAX/MIN the type's bounds):
- add/sub/mul wrap mod 2^N (Solidity `unchecked`); intN is two's complement.
- div truncates toward zero; b = 0 gives MAX; intN MIN / −1 wraps to MIN.
- safe ops return (success, result): success iff the exact result fits (div: b ≠ 0, which
  also excludes MIN / −1 since its exact result is MAX + 1); result 0 when not.
- comparisons order by the mathematical value, i.e. signed for intN.
- transfer/mint/burn never fail and cap silently (see each kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nox.compute.operators import Operator

Kernel = Callable[..., tuple[Any, ...]]


def _identity(v: int) -> tuple[int]:
    return (v,)


def _eq(a: int, b: int) -> tuple[bool]:
    return (a == b,)


def _ne(a: int, b: int) -> tuple[bool]:
    return (a != b,)


def _lt(a: int, b: int) -> tuple[bool]:
    return (a < b,)


def _le(a: int, b: int) -> tuple[bool]:
    return (a <= b,)


def _gt(a: int, b: int) -> tuple[bool]:
    return (a > b,)


def _ge(a: int, b: int) -> tuple[bool]:
    return (a >= b,)


def _select(condition: bool, if_true: int, if_false: int) -> tuple[int]:
    return (if_true if condition else if_false,)


def _unsigned(op: Operator, bits: int) -> Kernel:
    mask = (1 << bits) - 1
    hi = mask

    def add(a: int, b: int) -> tuple[int]:
        return ((a + b) & mask,)

    def sub(a: int, b: int) -> tuple[int]:
        return ((a - b) & mask,)

    def mul(a: int, b: int) -> tuple[int]:
        return ((a * b) & mask,)

    def div(a: int, b: int) -> tuple[int]:
        return (a // b,) if b else (hi,)

    def safe_add(a: int, b: int) -> tuple[bool, int]:
        r = a + b
        return (True, r) if r <= hi else (False, 0)

    def safe_sub(a: int, b: int) -> tuple[bool, int]:
        return (True, a - b) if a >= b else (False, 0)

    def safe_mul(a: int, b: int) -> tuple[bool, int]:
        r = a * b
        return (True, r) if r <= hi else (False, 0)

    def safe_div(a: int, b: int) -> tuple[bool, int]:
        return (True, a // b) if b else (False, 0)

    def transfer(amount: int, balance_from: int, balance_to: int) -> tuple[int, int, int]:
        # transferred = min(amount, balanceFrom, MAX − balanceTo)
        t = min(amount, balance_from, hi - balance_to)
        return (balance_from - t, balance_to + t, t)

    def mint(amount: int, balance_to: int, total_supply: int) -> tuple[int, int]:
        # minted = min(amount, MAX − totalSupply, MAX − balanceTo)
        m = min(amount, hi - total_supply, hi - balance_to)
        return (balance_to + m, total_supply + m)

    def burn(amount: int, balance_from: int, total_supply: int) -> tuple[int, int, int]:
        # burnt = min(amount, balanceFrom, totalSupply)
        x = min(amount, balance_from, total_supply)
        return (balance_from - x, total_supply - x, x)

    table: dict[Operator, Kernel] = {
        Operator.ADD: add,
        Operator.SUB: sub,
        Operator.MUL: mul,
        Operator.DIV: div,
        Operator.SAFE_ADD: safe_add,
        Operator.SAFE_SUB: safe_sub,
        Operator.SAFE_MUL: safe_mul,
        Operator.SAFE_DIV: safe_div,
        Operator.TRANSFER: transfer,
        Operator.MINT: mint,
        Operator.BURN: burn,
    }
    return table[op]


def _signed(op: Operator, bits: int) -> Kernel:
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    lo, hi = -half, half - 1

    # ((x + half) & mask) - half maps any integer to its two's-complement value mod 2^N.
    def add(a: int, b: int) -> tuple[int]:
        return (((a + b + half) & mask) - half,)

    def sub(a: int, b: int) -> tuple[int]:
        return (((a - b + half) & mask) - half,)

    def mul(a: int, b: int) -> tuple[int]:
        return (((a * b + half) & mask) - half,)

    def _quotient(a: int, b: int) -> int:
        # Truncation toward zero; Python's // floors, so divide magnitudes.
        q = abs(a) // abs(b)
        return -q if (a ^ b) < 0 else q

    def div(a: int, b: int) -> tuple[int]:
        if not b:
            return (hi,)
        return (((_quotient(a, b) + half) & mask) - half,)  # MIN / −1 wraps to MIN

    def safe_add(a: int, b: int) -> tuple[bool, int]:
        r = a + b
        return (True, r) if lo <= r <= hi else (False, 0)

    def safe_sub(a: int, b: int) -> tuple[bool, int]:
        r = a - b
        return (True, r) if lo <= r <= hi else (False, 0)

    def safe_mul(a: int, b: int) -> tuple[bool, int]:
        r = a * b
        return (True, r) if lo <= r <= hi else (False, 0)

    def safe_div(a: int, b: int) -> tuple[bool, int]:
        if not b:
            return (False, 0)
        q = _quotient(a, b)
        return (True, q) if q <= hi else (False, 0)  # only MIN / −1 exceeds MAX

    table: dict[Operator, Kernel] = {
        Operator.ADD: add,
        Operator.SUB: sub,
        Operator.MUL: mul,
        Operator.DIV: div,
        Operator.SAFE_ADD: safe_add,
        Operator.SAFE_SUB: safe_sub,
        Operator.SAFE_MUL: safe_mul,
        Operator.SAFE_DIV: safe_div,
    }
    return table[op]


_SHARED: dict[Operator, Kernel] = {
    Operator.PLAINTEXT_TO_ENCRYPTED: _identity,
    Operator.SELECT: _select,
    Operator.EQ: _eq,
    Operator.NE: _ne,
    Operator.LT: _lt,
    Operator.LE: _le,
    Operator.GT: _gt,
    Operator.GE: _ge,
}


def kernel(op: Operator, kind: str, bits: int) -> Kernel:
    """The kernel of `op` for a type of this kind and width; the caller has type-checked.

    For select, kind and bits are the branches'. Raises KeyError for a combination
    `operators.output_types` refuses.
    """
    shared = _SHARED.get(op)
    if shared is not None:
        return shared
    if kind == "uint":
        return _unsigned(op, bits)
    if kind == "int":
        return _signed(op, bits)
    raise KeyError((op, kind))
