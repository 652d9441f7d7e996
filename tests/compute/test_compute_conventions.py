"""DESIGN §7's conventions where Solidity defines nothing (it reverts), at every width.

Division by zero (MAX), the safe ops' result 0 on failure, and the token ops' silent
capping. Everything Solidity does define is compared with the EVM in
test_compute_evm_differential.py (including MIN / −1 for div and safeDiv).
"""

from __future__ import annotations

import pytest
from compute_support import INTS, NUMERIC, UINTS, run

from nox.compute import Operator
from nox.handles import ValueType

OP = Operator


@pytest.mark.parametrize("vt", NUMERIC, ids=str)
def test_div_by_zero_gives_max_whatever_the_numerator(vt: ValueType) -> None:
    for a in {0, 1, vt.max_value, vt.min_value, -1 if vt.is_signed else 2}:
        assert run(OP.DIV, vt, a, 0) == (vt.max_value,)


@pytest.mark.parametrize("vt", INTS, ids=str)
def test_div_min_by_minus_one_wraps_to_min(vt: ValueType) -> None:
    assert run(OP.DIV, vt, vt.min_value, -1) == (vt.min_value,)


@pytest.mark.parametrize("vt", NUMERIC, ids=str)
def test_failed_safe_ops_return_false_and_zero(vt: ValueType) -> None:
    lo, hi = vt.min_value, vt.max_value
    failing = [
        (OP.SAFE_ADD, hi, 1),
        (OP.SAFE_SUB, lo, 1),
        (OP.SAFE_MUL, hi, 2),
        (OP.SAFE_DIV, hi, 0),
        (OP.SAFE_DIV, 0, 0),
    ]
    if vt.is_signed:
        failing += [(OP.SAFE_ADD, lo, -1), (OP.SAFE_SUB, hi, -1), (OP.SAFE_DIV, lo, -1)]
        failing += [(OP.SAFE_MUL, lo, -1), (OP.SAFE_MUL, lo, 2)]
    for op, a, b in failing:
        assert run(op, vt, a, b) == (False, 0), (op.name, a, b)


@pytest.mark.parametrize("vt", UINTS, ids=str)
def test_transfer_caps_silently(vt: ValueType) -> None:
    m = vt.max_value
    # (amount, balanceFrom, balanceTo) -> (newBalanceFrom, newBalanceTo, transferred)
    table = [
        ((30, 100, 5), (70, 35, 30)),  # no cap
        ((100, 100, 5), (0, 105, 100)),  # exactly the balance
        ((101, 100, 5), (0, 105, 100)),  # capped by balanceFrom
        ((m, 0, 5), (0, 5, 0)),  # empty sender
        ((50, 100, m - 20), (80, m, 20)),  # capped by MAX − balanceTo
        ((m, m, m), (m, m, 0)),  # recipient full
        ((m, m, 0), (0, m, m)),  # everything moves
        ((0, 100, 5), (100, 5, 0)),  # nothing asked
    ]
    for args, expected in table:
        assert run(OP.TRANSFER, vt, *args) == expected, args


@pytest.mark.parametrize("vt", UINTS, ids=str)
def test_mint_caps_silently(vt: ValueType) -> None:
    m = vt.max_value
    # (amount, balanceTo, totalSupply) -> (newBalanceTo, newTotalSupply)
    table = [
        ((30, 10, 100), (40, 130)),  # no cap
        ((m, 10, 100), (m - 90, m)),  # capped by MAX − totalSupply
        ((50, m - 7, m - 7), (m, m)),  # capped by both, equally
        ((50, m - 7, m - 30), (m, m - 23)),  # capped by MAX − balanceTo
        ((1, 0, m), (0, m)),  # supply full
        ((0, 10, 100), (10, 100)),  # nothing asked
    ]
    for args, expected in table:
        assert run(OP.MINT, vt, *args) == expected, args


@pytest.mark.parametrize("vt", UINTS, ids=str)
def test_burn_caps_silently(vt: ValueType) -> None:
    m = vt.max_value
    # (amount, balanceFrom, totalSupply) -> (newBalanceFrom, newTotalSupply, burnt)
    table = [
        ((30, 100, 200), (70, 170, 30)),  # no cap
        ((m, 100, 200), (0, 100, 100)),  # capped by balanceFrom
        ((m, 100, 40), (60, 0, 40)),  # capped by totalSupply (an inconsistent ledger)
        ((5, 0, 200), (0, 200, 0)),  # empty balance
        ((m, m, m), (0, 0, m)),  # everything burns
        ((0, 100, 200), (100, 200, 0)),  # nothing asked
    ]
    for args, expected in table:
        assert run(OP.BURN, vt, *args) == expected, args
