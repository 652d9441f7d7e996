"""Algebraic properties of the engine, on Hypothesis-drawn types and operands.

These hold by DESIGN §7 whatever the values; they complement the EVM comparison (which pins
the exact bits) and the convention tables (which pin what Solidity leaves undefined), and
they run fast, so they can draw many more cases.
"""

from __future__ import annotations

from compute_support import NUMERIC, UINTS, run
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.compute import Operator, Value, execute
from nox.handles import ValueType

OP = Operator


def values(vt: ValueType) -> st.SearchStrategy[int]:
    lo, hi = vt.min_value, vt.max_value
    near_edges = st.sampled_from([lo, lo + 1, 0, 1, hi - 1, hi])
    by_magnitude = st.integers(0, vt.bits).flatmap(
        lambda k: st.integers(max(lo, -(1 << k)), min(hi, (1 << k) - 1))
    )
    return st.one_of(near_edges, by_magnitude, st.integers(lo, hi))


@st.composite
def typed(draw: st.DrawFn, types: tuple[ValueType, ...], n: int) -> tuple[ValueType, list[int]]:
    vt = draw(st.sampled_from(types))
    return vt, [draw(values(vt)) for _ in range(n)]


def fits(vt: ValueType, x: int) -> bool:
    return vt.min_value <= x <= vt.max_value


def congruent(vt: ValueType, x: int, y: int) -> bool:
    return (x - y) % (1 << vt.bits) == 0


@settings(max_examples=300)
@given(typed(NUMERIC, 2))
def test_wrapping_ops_are_the_exact_result_mod_2n(case: tuple[ValueType, list[int]]) -> None:
    vt, (a, b) = case
    for op, exact in ((OP.ADD, a + b), (OP.SUB, a - b), (OP.MUL, a * b)):
        (r,) = run(op, vt, a, b)
        assert fits(vt, r), op.name
        assert congruent(vt, r, exact), op.name


@settings(max_examples=300)
@given(typed(NUMERIC, 2))
def test_safe_ops_succeed_exactly_when_the_result_fits(case: tuple[ValueType, list[int]]) -> None:
    vt, (a, b) = case
    for op, exact in ((OP.SAFE_ADD, a + b), (OP.SAFE_SUB, a - b), (OP.SAFE_MUL, a * b)):
        ok, r = run(op, vt, a, b)
        assert ok is fits(vt, exact), op.name
        assert r == (exact if ok else 0), op.name


@settings(max_examples=300)
@given(typed(NUMERIC, 2))
def test_div_truncates_toward_zero(case: tuple[ValueType, list[int]]) -> None:
    vt, (a, b) = case
    (q,) = run(OP.DIV, vt, a, b)
    ok, safe_q = run(OP.SAFE_DIV, vt, a, b)
    if b == 0:
        assert (q, ok, safe_q) == (vt.max_value, False, 0)
        return
    if vt.is_signed and (a, b) == (vt.min_value, -1):
        assert (q, ok, safe_q) == (vt.min_value, False, 0)
        return
    remainder = a - q * b
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder < 0) == (a < 0)  # toward zero, not floor
    assert (ok, safe_q) == (True, q)


@settings(max_examples=300)
@given(typed(NUMERIC, 2))
def test_comparisons_are_one_order(case: tuple[ValueType, list[int]]) -> None:
    vt, (a, b) = case
    eq, ne, lt, le, gt, ge = (
        run(op, vt, a, b)[0] for op in (OP.EQ, OP.NE, OP.LT, OP.LE, OP.GT, OP.GE)
    )
    assert all(type(x) is bool for x in (eq, ne, lt, le, gt, ge))
    assert ne is not eq
    assert ge is not lt
    assert le is not gt
    assert le is (lt or eq)
    assert ge is (gt or eq)
    assert (lt, eq, gt).count(True) == 1
    assert run(OP.LT, vt, b, a)[0] is gt  # antisymmetry


@settings(max_examples=300)
@given(typed(NUMERIC, 2), st.booleans())
def test_select_picks_a_branch(case: tuple[ValueType, list[int]], condition: bool) -> None:
    vt, (a, b) = case
    assert run(OP.SELECT, vt, condition, a, b) == ((a if condition else b),)


@settings(max_examples=300)
@given(typed(UINTS, 3))
def test_transfer_conserves_and_moves_the_most_allowed(case: tuple[ValueType, list[int]]) -> None:
    vt, (amount, bal_from, bal_to) = case
    new_from, new_to, moved = run(OP.TRANSFER, vt, amount, bal_from, bal_to)
    assert 0 <= moved <= amount
    assert (new_from, new_to) == (bal_from - moved, bal_to + moved)
    assert fits(vt, new_from)
    assert fits(vt, new_to)
    # Maximal: one more unit would overdraw the sender, overflow the recipient, or exceed
    # the amount asked.
    assert moved in (amount, bal_from) or bal_to + moved == vt.max_value


@settings(max_examples=300)
@given(typed(UINTS, 3))
def test_mint_keeps_supply_and_balance_in_step(case: tuple[ValueType, list[int]]) -> None:
    vt, (amount, bal_to, supply) = case
    new_to, new_supply = run(OP.MINT, vt, amount, bal_to, supply)
    minted = new_to - bal_to
    assert 0 <= minted <= amount
    assert new_supply - supply == minted
    assert fits(vt, new_to)
    assert fits(vt, new_supply)
    assert minted == amount or new_to == vt.max_value or new_supply == vt.max_value


@settings(max_examples=300)
@given(typed(UINTS, 3))
def test_burn_removes_the_same_from_balance_and_supply(case: tuple[ValueType, list[int]]) -> None:
    vt, (amount, bal_from, supply) = case
    new_from, new_supply, burnt = run(OP.BURN, vt, amount, bal_from, supply)
    assert 0 <= burnt <= amount
    assert (new_from, new_supply) == (bal_from - burnt, supply - burnt)
    assert fits(vt, new_from)
    assert fits(vt, new_supply)
    assert burnt == amount or new_from == 0 or new_supply == 0


@settings(max_examples=200)
@given(typed(NUMERIC, 1))
def test_plaintext_bytes_round_trip(case: tuple[ValueType, list[int]]) -> None:
    vt, (a,) = case
    v = Value.of(vt, a)
    data = v.to_plaintext()
    assert len(data) == vt.bits // 8
    assert Value.from_plaintext(vt, data) == v
    # The event's 32-byte word, zero-extended and (for intN) sign-extended, reads back.
    low = (a % (1 << vt.bits)).to_bytes(32, "big")
    assert Value.from_word(vt, low) == v
    assert Value.from_word(vt, (a % (1 << 256)).to_bytes(32, "big")) == v
    assert execute(OP.PLAINTEXT_TO_ENCRYPTED, [v]) == (v,)
