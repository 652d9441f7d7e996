"""The demo's reference model agrees with the computation engine (itself checked against the
EVM) on ConfidentialToken's mint and transfer over euint256, edges included."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nox.compute.engine import execute
from nox.compute.operators import Operator
from nox.compute.value import Value
from nox.devnet.demo import UINT256_MAX, TokenModel
from nox.handles import uint

U256 = uint(256)
amounts = st.one_of(
    st.integers(0, UINT256_MAX), st.sampled_from([0, 1, UINT256_MAX, UINT256_MAX - 1])
)


def _run(op: Operator, *values: int) -> list[int]:
    return [v.value for v in execute(op, [Value(U256, x) for x in values])]


@settings(max_examples=150)
@given(amount=amounts, balance_from=amounts, balance_to=amounts)
@example(amount=500, balance_from=300, balance_to=0)  # the demo's capped transfer
def test_model_transfer_matches_the_engine(amount: int, balance_from: int, balance_to: int) -> None:
    model = TokenModel(balances={"a": balance_from, "b": balance_to})
    moved = model.transfer("a", "b", amount)
    assert [model.balances["a"], model.balances["b"], moved] == _run(
        Operator.TRANSFER, amount, balance_from, balance_to
    )


@settings(max_examples=150)
@given(amount=amounts, balance_to=amounts, supply=amounts)
def test_model_mint_matches_the_engine(amount: int, balance_to: int, supply: int) -> None:
    model = TokenModel(balances={"b": balance_to}, total_supply=supply)
    model.mint("b", amount)
    assert [model.balances["b"], model.total_supply] == _run(
        Operator.MINT, amount, balance_to, supply
    )
