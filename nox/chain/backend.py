"""Chain backends behind one interface: the embedded EVM (py-evm) and any JSON-RPC node.

Both expose a `web3.Web3`, funded local accounts (transactions are always signed locally, as
in production), `deploy`, `transact` with custom-error decoding, and test-time helpers to move
the clock. An embedded EVM lives in one process: several processes (CLI invocations, separate
services) that must share chain state talk to a JSON-RPC node such as anvil instead.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract.contract import Contract, ContractFunction
from web3.exceptions import ContractLogicError, Web3Exception
from web3.types import TxParams, TxReceipt, Wei

from nox.chain.artifacts import Artifact, all_artifacts
from nox.chain.exceptions import ChainUnavailable, ContractReverted

#: Chain id of the embedded and anvil dev chains; must fit the 4-byte handle field.
DEV_CHAIN_ID = 31337

_ERROR_SELECTOR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class _ErrorDecoder:
    """Maps custom-error selectors of every compiled contract to (name, arg names, types)."""

    def __init__(self, artifacts: Sequence[Artifact]) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for artifact in artifacts:
            for item in artifact.abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                names = [i["name"] or f"arg{n}" for n, i in enumerate(item["inputs"])]
                self._by_selector[keccak(text=signature)[:4]] = (item["name"], names, types)

    def decode(self, data: bytes) -> ContractReverted:
        selector, body = data[:4], data[4:]
        try:
            if selector == _ERROR_SELECTOR_STRING:
                (message,) = abi_decode(["string"], body)
                return ContractReverted("Error", {"message": message}, data=data)
            if selector == _PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], body)
                return ContractReverted("Panic", {"code": code}, data=data)
            known = self._by_selector.get(selector)
            if known is not None:
                name, names, types = known
                values = abi_decode(types, body)
                return ContractReverted(name, dict(zip(names, values, strict=True)), data=data)
        except (DecodingError, ValueError, OverflowError):
            pass
        return ContractReverted("Unknown", {"data": data}, data=data)


def _abi_type(item: dict[str, Any]) -> str:
    t = str(item["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t


def _revert_data(exc: ContractLogicError) -> bytes:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return b""


class ChainBackend(ABC):
    """A chain the contracts run on: web3 access, funded accounts, deployment, transactions."""

    w3: Web3
    chain_id: int
    accounts: list[LocalAccount]

    #: Exceptions through which this backend's web3 reports a revert.
    _revert_types: tuple[type[Exception], ...] = (ContractLogicError,)

    def __init__(self) -> None:
        self._decoder = _ErrorDecoder(all_artifacts())

    def _revert_bytes(self, exc: Exception) -> bytes:
        return _revert_data(exc) if isinstance(exc, ContractLogicError) else b""

    @property
    def deployer(self) -> LocalAccount:
        """The first funded account (deploys contracts and governs them in dev setups)."""
        return self.accounts[0]

    def contract(self, artifact: Artifact, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    def deploy(self, artifact: Artifact, *args: Any, sender: LocalAccount | None = None) -> str:
        """Deploy `artifact` with constructor `args`; return its checksum address."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self._send(factory.constructor(*args), sender or self.deployer)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainUnavailable(f"deployment of {artifact.name} returned no address")
        return str(address)

    def transact(
        self, call: ContractFunction, sender: LocalAccount | None = None, *, gas: int | None = None
    ) -> TxReceipt:
        """Sign and send `call` from `sender`, wait for the receipt; raise ContractReverted."""
        return self._send(call, sender or self.deployer, gas=gas)

    def call(self, call: ContractFunction, sender: str | None = None) -> Any:
        """A view call; reverts are raised as ContractReverted."""
        params: TxParams = {"from": Web3.to_checksum_address(sender)} if sender else {}
        try:
            return call.call(params)
        except self._revert_types as exc:
            raise self._decoder.decode(self._revert_bytes(exc)) from None

    def decode_revert(self, data: bytes) -> ContractReverted:
        return self._decoder.decode(data)

    def _send(self, call: Any, sender: LocalAccount, *, gas: int | None = None) -> TxReceipt:
        params: TxParams = {
            "from": sender.address,
            "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain_id,
        }
        try:
            # estimating surfaces a revert with its data; the margin covers the 63/64 rule of
            # nested calls, which some nodes' estimators (anvil) do not account for
            if gas is None:
                gas = int(call.estimate_gas(params))
                gas += gas // 5 + 20_000
            params["gas"] = gas
            tx = call.build_transaction(params)
        except self._revert_types as exc:
            raise self._decoder.decode(self._revert_bytes(exc)) from None
        signed = sender.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        except self._revert_types as exc:
            raise self._decoder.decode(self._revert_bytes(exc)) from None
        except Web3Exception as exc:
            raise ChainUnavailable(f"transaction failed: {exc}") from None
        if receipt["status"] != 1:
            raise ContractReverted("Unknown", {"tx": HexBytes(tx_hash).to_0x_hex()})
        return receipt

    def fund(self, address: str, wei: int = 10**18) -> None:
        """Send `wei` from the deployer (so an enclave key can pay its own gas)."""
        tx: TxParams = {
            "from": self.deployer.address,
            "to": Web3.to_checksum_address(address),
            "value": Wei(wei),
            "nonce": self.w3.eth.get_transaction_count(self.deployer.address, "pending"),
            "chainId": self.chain_id,
            "gas": 21000,
            "maxFeePerGas": Wei(2 * self.w3.eth.gas_price + 10**9),
            "maxPriorityFeePerGas": Wei(10**9),
        }
        signed = self.deployer.sign_transaction(cast(dict[str, Any], tx))
        self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    @abstractmethod
    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block (dev chains only)."""


class EmbeddedChain(ChainBackend):
    """eth-tester + py-evm (Prague rules, EIP-1153 included) in this process, chain id 31337."""

    def __init__(self, *, chain_id: int = DEV_CHAIN_ID, accounts: int = 10) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider
        from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return

        if not 0 < chain_id < 2**32:
            raise ValueError("chain id must fit in 32 bits (handle layout)")
        from eth_tester.exceptions import TransactionFailed

        super().__init__()
        self._revert_types = (ContractLogicError, TransactionFailed)
        backend = PyEVMBackend(
            genesis_state=PyEVMBackend.generate_genesis_state(num_accounts=accounts)
        )
        # eth-tester hard-codes a chain id that does not fit 4 bytes: rebuild the chain object
        # on the same database with our id (the VM reads it from the chain class).
        base_chain = type(backend.chain)
        chain_cls = type("NoxDevChain", (base_chain,), {"chain_id": chain_id})
        backend.chain = chain_cls(backend.chain.chaindb.db)
        self._tester = EthereumTester(backend)
        endpoints = {ns: dict(methods) for ns, methods in API_ENDPOINTS.items()}
        endpoints["eth"]["chainId"] = static_return(chain_id)
        self.w3 = Web3(EthereumTesterProvider(self._tester, api_endpoints=endpoints))
        self.chain_id = chain_id
        self.accounts = [Account.from_key(k.to_bytes()) for k in backend.account_keys]

    def advance_time(self, seconds: int) -> None:
        # eth-tester mines the travelled-to block one second early
        self._tester.time_travel(self.now() + seconds + 1)

    def _revert_bytes(self, exc: Exception) -> bytes:
        # web3's tester provider re-raises eth-tester's TransactionFailed with the revert data
        # rendered as text; the original exception (with the raw bytes) is its context.
        seen: BaseException | None = exc
        while seen is not None:
            if seen.args and isinstance(seen.args[0], bytes):
                return seen.args[0]
            if seen.args and isinstance(seen.args[0], Exception):
                inner = seen.args[0]
                if inner.args and isinstance(inner.args[0], bytes):
                    return bytes(inner.args[0])
            if seen.args and isinstance(seen.args[0], str):
                text = seen.args[0].removeprefix("execution reverted: ")
                if text[:2] in ("b'", 'b"'):
                    value = ast.literal_eval(text)  # a bytes literal eth-tester printed
                    if isinstance(value, bytes):
                        return value
            seen = seen.__context__
        return super()._revert_bytes(exc)


class RpcChain(ChainBackend):
    """Any Ethereum JSON-RPC endpoint; transactions are signed with the given keys."""

    def __init__(self, url: str, *, private_keys: Sequence[bytes | str] = ()) -> None:
        super().__init__()
        self.url = url
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except (OSError, Web3Exception) as exc:
            raise ChainUnavailable(f"cannot reach JSON-RPC endpoint {url}: {exc}") from None
        if not 0 < self.chain_id < 2**32:
            raise ChainUnavailable(f"chain id {self.chain_id} does not fit the handle's 32 bits")
        self.accounts = [Account.from_key(k) for k in private_keys]

    def advance_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
