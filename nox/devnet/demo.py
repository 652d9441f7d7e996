"""`noxctl devnet --demo`: a confidential token, end to end, checked against a Python model.

Through the SDK (`nox.sdk`): the owner mints to Alice; Alice pays Bob; Bob tries to send
Carol more than he has (the transfer is capped silently, as DESIGN §7 says); then every
holder decrypts their own balance, Bob decrypts what his capped transfer really moved, the
owner decrypts the total supply, and a stranger's decryption of Alice's balance is refused
by the gateway (the on-chain ACL does not make them a viewer). Every decrypted value is
compared with `TokenModel`; the demo passes only if all agree and the refusal happened.
Nothing is faked: a step that cannot run fails the demo and says which step it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from nox.compute.operators import Operator
from nox.devnet.exceptions import DemoFailed
from nox.devnet.network import Devnet
from nox.errors import NoxError
from nox.gateway.exceptions import AclDenied

UINT256_MAX = 2**256 - 1


@dataclass
class TokenModel:
    """The reference: ConfidentialToken's semantics over euint256 (DESIGN §7), in clear."""

    balances: dict[str, int] = field(default_factory=dict)
    total_supply: int = 0

    def mint(self, to: str, amount: int) -> int:
        """minted = min(amount, MAX - totalSupply, MAX - balanceTo)."""
        to_balance = self.balances.get(to, 0)
        minted = min(amount, UINT256_MAX - self.total_supply, UINT256_MAX - to_balance)
        self.balances[to] = to_balance + minted
        self.total_supply += minted
        return minted

    def transfer(self, sender: str, to: str, amount: int) -> int:
        """transferred = min(amount, balanceFrom, MAX - balanceTo); never reverts."""
        from_balance, to_balance = self.balances.get(sender, 0), self.balances.get(to, 0)
        moved = min(amount, from_balance, UINT256_MAX - to_balance)
        self.balances[sender] = from_balance - moved
        self.balances[to] = self.balances.get(to, 0) + moved
        return moved


@dataclass
class _Check:
    what: str
    expected: int
    got: int | None

    @property
    def ok(self) -> bool:
        return self.got == self.expected


async def run_demo(net: Devnet, *, say: Callable[[str], None], result_wait: float = 60.0) -> int:
    """Run the scenario on a started devnet; 0 when every value is right, 1 otherwise."""
    try:
        checks = await _scenario(net, say, result_wait)
    except (NoxError, TimeoutError) as exc:
        say(f"demo FAILED: {exc}")
        return 1
    bad = [c for c in checks if not c.ok]
    for c in checks:
        mark = "ok " if c.ok else "BAD"
        say(f"  {mark} {c.what}: decrypted {c.got}, expected {c.expected}")
    if bad:
        say(f"demo FAILED: {len(bad)} of {len(checks)} values wrong")
        return 1
    say(f"demo passed: {len(checks)} decrypted values match the reference model, stranger refused")
    return 0


async def _scenario(net: Devnet, say: Callable[[str], None], result_wait: float) -> list[_Check]:
    # Imported here: the SDK is optional for the devnet itself.
    from nox.sdk import AccountSigner
    from nox.sdk.contracts import ConfidentialTokenClient, TokenReceipt

    chain = net.chain
    if chain is None or not net.gateway_target or net.kms_public is None:
        raise DemoFailed("the devnet is not running (no chain, gateway or KMS)")
    token_address = chain.deployment.token
    if token_address is None:
        raise DemoFailed("no ConfidentialToken deployed")
    accounts = chain.backend.accounts
    owner, alice, bob, carol, stranger = (accounts[i] for i in (0, 2, 3, 4, 5))
    names = {
        a.address: n
        for a, n in zip((owner, alice, bob, carol), ("owner", "alice", "bob", "carol"), strict=True)
    }
    model = TokenModel()
    checks: list[_Check] = []

    async with net.client() as nox:

        def token(account: LocalAccount) -> ConfidentialTokenClient:
            return ConfidentialTokenClient(nox, chain.backend, token_address, account)

        async def settle(step: str, receipt: TokenReceipt) -> None:
            started = time.monotonic()
            for handle in receipt.output_handles:
                await nox.wait_for_result(handle, result_wait)
            ops = len(receipt.operations)
            elapsed = time.monotonic() - started
            tx = receipt.tx_hash.hex()[:12]
            say(f"  {step}: tx 0x{tx}…, {ops} ops computed in {elapsed:.2f}s")

        say("demo: confidential token (euint256) through the SDK")
        await asyncio.to_thread(net.align_chain_clock)
        receipt = await token(owner).mint(alice.address, 1000)
        model.mint(alice.address, 1000)
        await settle("owner mints 1000 to alice", receipt)

        await asyncio.to_thread(net.align_chain_clock)
        receipt = await token(alice).transfer(bob.address, 300)
        model.transfer(alice.address, bob.address, 300)
        await settle("alice sends 300 to bob", receipt)

        await asyncio.to_thread(net.align_chain_clock)
        receipt = await token(bob).transfer(carol.address, 500)
        moved = model.transfer(bob.address, carol.address, 500)
        await settle("bob sends 500 to carol (he has 300: capped)", receipt)
        moved_handle = _transferred_handle(receipt.operations)

        for account in (alice, bob, carol):
            got = await token(account).balance(AccountSigner(account), timeout=result_wait)
            checks.append(
                _Check(
                    f"{names[account.address]}'s balance",
                    model.balances[account.address],
                    _int(got),
                )
            )
        values = await nox.decrypt([moved_handle], user_key=AccountSigner(bob))
        checks.append(_Check("bob's capped transfer moved", moved, _int(values[moved_handle])))
        supply_handle = await _view(chain, token_address, "totalSupply")
        values = await nox.decrypt([supply_handle], user_key=AccountSigner(owner))
        checks.append(
            _Check("total supply (owner)", model.total_supply, _int(values[supply_handle]))
        )

        alice_balance = await token(alice).balance_handle()
        try:
            await nox.decrypt([alice_balance], user_key=AccountSigner(stranger))
        except AclDenied as exc:  # the ACL's refusal, not any other permission error
            say(f"  stranger decrypting alice's balance: refused ({exc.reason})")
        else:
            raise DemoFailed("a stranger decrypted alice's balance: the ACL was not enforced")
    return checks


def _transferred_handle(operations: Any) -> bytes:
    for op in operations:
        if op.operator == Operator.TRANSFER:
            return bytes(op.outputs[2])  # (newBalanceFrom, newBalanceTo, transferred)
    raise DemoFailed("the transfer emitted no Transfer operation")


async def _view(chain: Any, token_address: str, name: str) -> bytes:
    from nox.chain.artifacts import load_artifact

    contract = chain.backend.contract(load_artifact("ConfidentialToken"), token_address)
    value = await asyncio.to_thread(getattr(contract.functions, name)().call)
    return bytes(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["TokenModel", "run_demo"]
