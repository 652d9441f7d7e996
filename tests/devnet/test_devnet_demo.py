"""The demo's verdict is real: with a reference model that forgets the transfer cap, the
same network run makes the demo fail, naming the wrong values (exit code 1)."""

from __future__ import annotations

import pytest
from devnet_support import RunningDevnet

from nox.devnet import demo
from nox.devnet.demo import TokenModel, run_demo

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


class UncappedModel(TokenModel):
    """A wrong reference: transfers move the whole amount, even beyond the balance."""

    def transfer(self, sender: str, to: str, amount: int) -> int:
        self.balances[sender] = self.balances.get(sender, 0) - amount
        self.balances[to] = self.balances.get(to, 0) + amount
        return amount


def test_demo_fails_and_names_the_values_a_wrong_model_disagrees_with(
    devnet: RunningDevnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "TokenModel", UncappedModel)
    said: list[str] = []
    assert devnet.run(run_demo(devnet.net, say=said.append)) == 1
    bad = sorted(line.split(":")[0].strip() for line in said if line.lstrip().startswith("BAD"))
    assert bad == [
        "BAD bob's balance",
        "BAD bob's capped transfer moved",
        "BAD carol's balance",
    ]
    assert any("demo FAILED: 3 of 5 values wrong" in line for line in said)
