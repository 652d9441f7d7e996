"""Calling contracts with encrypted inputs: the gateway encrypts, the contract checks the proof.

The pattern every confidential contract follows (DESIGN §1, phase 1): encrypt the value
through the gateway for (sender, contract), then pass the handle and the 137-byte proof to
the contract, which calls `NoxCompute.validateInputProof`. `ConfidentialTokenClient` does
this for the sample ConfidentialToken and reads balances back (wait for the result handle,
then decrypt). Chain access is `nox.chain`'s; its calls block, so they run in a worker
thread, one at a time per client (the embedded EVM is not thread-safe: do not share one
`EmbeddedChain` between concurrent callers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from eth_account.signers.local import LocalAccount

from nox.chain.artifacts import load_artifact
from nox.chain.backend import ChainBackend
from nox.chain.contracts import Address, ComputeClient, OperationEvent, to_bytes20, to_checksum
from nox.handles import Plaintext, uint
from nox.sdk.authorization import UserSigner
from nox.sdk.client import EncryptedInput, NoxClient

__all__ = ["ConfidentialTokenClient", "TokenReceipt", "encrypt_for_contract"]

EUINT256 = uint(256)
P = ParamSpec("P")
T = TypeVar("T")


async def encrypt_for_contract(
    nox: NoxClient,
    value: int | bool | bytes | str,
    value_type: int,
    *,
    sender: Address,
    contract: Address,
) -> EncryptedInput:
    """Encrypt `value` so that `sender` can pass it to `contract` (the proof's owner and app)."""
    return await nox.encrypt_input(
        value, value_type, owner=to_bytes20(sender), application=to_bytes20(contract)
    )


@dataclass(frozen=True)
class TokenReceipt:
    """A token call: its transaction, the encrypted amount, and the operations it requested."""

    tx_hash: bytes
    amount: EncryptedInput
    operations: tuple[OperationEvent, ...]

    @property
    def output_handles(self) -> tuple[bytes, ...]:
        """Every result handle the call asked the network to compute, in event order."""
        return tuple(h for op in self.operations for h in op.outputs)


class ConfidentialTokenClient:
    """The sample ConfidentialToken (euint256 balances) for one account."""

    def __init__(
        self,
        nox: NoxClient,
        backend: ChainBackend,
        address: Address,
        account: LocalAccount,
    ) -> None:
        self._nox = nox
        self._backend = backend
        self.address = to_checksum(address)
        self.account = account
        self._contract = backend.contract(load_artifact("ConfidentialToken"), self.address)
        self._lock = asyncio.Lock()
        self._compute: ComputeClient | None = None

    def __repr__(self) -> str:
        return f"ConfidentialTokenClient({self.address}, account={self.account.address})"

    async def _chain(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def _compute_client(self) -> ComputeClient:
        if self._compute is None:
            address: Any = await self._chain(self._contract.functions.compute().call)
            self._compute = ComputeClient(self._backend, str(address))
        return self._compute

    async def _send(self, name: str, *args: object, amount: int) -> TokenReceipt:
        encrypted = await encrypt_for_contract(
            self._nox, amount, EUINT256.code, sender=self.account.address, contract=self.address
        )
        call = getattr(self._contract.functions, name)(*args, encrypted.handle, encrypted.proof)
        receipt = await self._chain(self._backend.transact, call, self.account)
        compute = await self._compute_client()
        operations = await self._chain(compute.operations, receipt)
        return TokenReceipt(
            tx_hash=bytes(receipt["transactionHash"]),
            amount=encrypted,
            operations=tuple(operations),
        )

    async def mint(self, to: Address, amount: int) -> TokenReceipt:
        """Mint `amount` to `to` (the token owner only); capped silently at the type's max."""
        return await self._send("mint", to_checksum(to), amount=amount)

    async def transfer(self, to: Address, amount: int) -> TokenReceipt:
        """Transfer `amount` to `to`; a larger amount than the balance moves what it can."""
        return await self._send("transfer", to_checksum(to), amount=amount)

    async def burn(self, amount: int) -> TokenReceipt:
        """Burn `amount` of this account's balance (capped at the balance)."""
        return await self._send("burn", amount=amount)

    async def balance_handle(self, holder: Address | None = None) -> bytes:
        """The handle of `holder`'s balance (default: this account); zero bytes if none."""
        who = to_checksum(holder if holder is not None else self.account.address)
        handle: Any = await self._chain(self._contract.functions.balanceOf(who).call)
        return bytes(handle)

    # A poll deadline passed on to NoxClient.wait_for_result (see there), not a call timeout.
    async def balance(self, user_key: UserSigner, *, timeout: float = 30.0) -> Plaintext:  # noqa: ASYNC109
        """`user_key`'s balance in clear: wait until the network stored it, then decrypt."""
        handle = await self.balance_handle(user_key.address)
        if handle == bytes(32):
            return 0
        await self._nox.wait_for_result(handle, timeout)
        values = await self._nox.decrypt([handle], user_key=user_key)
        return values[handle]
