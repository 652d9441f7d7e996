"""Confidential token transfers from the contract call, for benchmarks and chaos runs.

`TokenLoad` drives the sample ConfidentialToken on a running devnet (one process or
`--multi-process`), so every task takes the production path: a signed Ethereum transaction,
its `Operation` event, the ingestor, NATS, the orchestrator, a runner, the gateway.

The workload is built so that tasks are independent where they can be and checkable in the
end:
- `2 * pairs` fresh accounts, funded and minted a starting balance by the token owner
  (setup, not measured). Each setup block gets its own timestamp: a mint to a new holder
  wraps a zero (`plaintextToEncrypted`), and two such calls in one second from the token
  would derive the same result handle (see `Devnet.align_chain_clock`).
- Transfer i moves a random amount inside pair `i % pairs`, alternating direction by round,
  so each transfer is one task of exactly one `transfer` operation (3 inputs: the fresh
  encrypted amount and the two balances; 3 outputs). About one in five amounts exceeds the
  sender's balance, so the silent cap of DESIGN §7 is exercised. Transfers of different pairs
  do not depend on each other; those of one pair form a chain (a balance is the previous
  transfer's output).
- Amounts are encrypted through the gateway (`EncryptInput`, with input proofs) and the
  transactions signed before `send`, so sending costs one JSON-RPC call each.
- `wait_stored` reads the gateway's own database (the `gateway_tasks` rows), so detecting
  completion adds no load to the gateway; `verify` decrypts every balance and every
  transfer's `transferred` output as its holder, through the gateway and the KMS, and
  compares them with `TokenModel`, and counts the stored outputs of every task.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import OperationalError

from nox.chain.artifacts import load_artifact
from nox.chain.contracts import ComputeClient, to_bytes20, to_checksum
from nox.compute.operators import Operator
from nox.crypto.hashing import keccak256
from nox.devnet.demo import TokenModel
from nox.devnet.exceptions import DemoFailed
from nox.devnet.network import Devnet
from nox.errors import NoxError
from nox.gateway.exceptions import RateLimited
from nox.gateway.store._models import HANDLES, TASKS
from nox.handles import uint
from nox.orchestrator.tasks import task_id_for
from nox.sdk import AccountSigner, NoxClient

__all__ = ["LoadReport", "SentTransfer", "TokenLoad"]

EUINT256 = uint(256)
_START_BALANCE = 1_000
_POLL_SECONDS = 0.02


def _quiet(message: str) -> None:
    del message


@dataclass(frozen=True)
class _Planned:
    index: int
    sender: LocalAccount
    to: LocalAccount
    amount: int
    raw: bytes
    tx_hash: bytes


@dataclass(frozen=True)
class SentTransfer:
    """A transfer on the chain: who, how much, its transaction and task, when it was mined."""

    index: int
    sender: str
    to: str
    amount: int
    tx_hash: bytes
    task_id: bytes
    sent_at: float
    """time.time() when the node answered the send (anvil and py-evm mine it at once)."""


@dataclass
class LoadReport:
    """What `TokenLoad.verify` found."""

    tasks_sent: int
    tasks_stored: int
    missing: list[bytes] = field(default_factory=list)
    duplicated: list[bytes] = field(default_factory=list)
    reverted: list[bytes] = field(default_factory=list)
    values_checked: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.reverted or self.wrong) and (
            self.tasks_stored == self.tasks_sent
        )

    def summary(self) -> str:
        return (
            f"{self.tasks_sent} tasks sent, {self.tasks_stored} stored, {len(self.missing)} "
            f"missing, {len(self.duplicated)} stored twice, {len(self.reverted)} reverted; "
            f"{self.values_checked} values decrypted, {len(self.wrong)} wrong"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks_sent": self.tasks_sent,
            "tasks_stored": self.tasks_stored,
            "missing": ["0x" + t.hex() for t in self.missing],
            "duplicated": ["0x" + t.hex() for t in self.duplicated],
            "reverted": ["0x" + t.hex() for t in self.reverted],
            "values_checked": self.values_checked,
            "wrong": self.wrong,
            "ok": self.ok,
        }


class TokenLoad:
    """A prepared token workload on a running devnet; build it with `TokenLoad.prepare`."""

    def __init__(
        self,
        net: Devnet,
        nox: NoxClient,
        accounts: list[LocalAccount],
        planned: list[_Planned],
        model: TokenModel,
        setup_tasks: list[bytes],
    ) -> None:
        chain = net.chain
        assert chain is not None
        assert chain.deployment.token is not None
        self._net = net
        self._chain = chain
        self._nox = nox
        self._token = chain.deployment.token
        self.accounts = accounts
        self._planned = planned
        self.model = model  # after the setup mints; verify replays the transfers on a copy
        self.setup_tasks = setup_tasks
        self.sent: list[SentTransfer] = []
        self.moved: dict[int, int] = {}
        """What each transfer moved by the model (its cap), known after `verify`."""
        # one pooled connection: opening one per poll (every 20 ms) cost more than the query
        self._engine: Engine = create_engine(_store_url(net), pool_size=1, max_overflow=1)

    # ------------------------------------------------------------------ preparation

    @classmethod
    async def prepare(
        cls,
        net: Devnet,
        nox: NoxClient,
        *,
        pairs: int,
        transfers: int,
        seed: int = 0,
        say: Callable[[str], None] = _quiet,
        setup_timeout: float = 300.0,
    ) -> TokenLoad:
        """Fund and mint `2 * pairs` accounts (waits until the mints are stored), encrypt
        `transfers` amounts and sign their transactions (see the module docstring)."""
        chain = net.chain
        if chain is None or chain.deployment.token is None:
            raise DemoFailed("the devnet is not running or has no ConfidentialToken")
        if pairs < 1 or transfers < 0:
            raise DemoFailed("need at least one pair and a non-negative transfer count")
        backend = chain.backend
        token = backend.contract(load_artifact("ConfidentialToken"), chain.deployment.token)
        owner = backend.accounts[0]
        accounts = [
            Account.from_key(keccak256(f"nox-load:{seed}:{i}".encode())) for i in range(2 * pairs)
        ]
        model = TokenModel()
        say(f"load: funding and minting {len(accounts)} accounts")
        setup: list[bytes] = []
        for account in accounts:
            await asyncio.to_thread(backend.fund, account.address, 10**19)
            encrypted = await nox.encrypt_input(
                _START_BALANCE,
                EUINT256,
                owner=to_bytes20(owner.address),
                application=to_bytes20(token.address),
            )
            await asyncio.to_thread(net.align_chain_clock)
            call = token.functions.mint(account.address, encrypted.handle, encrypted.proof)
            receipt = await asyncio.to_thread(backend.transact, call, owner)
            setup.append(task_id_for(backend.chain_id, bytes(receipt["transactionHash"])))
            model.mint(account.address, _START_BALANCE)
        load = cls(net, nox, accounts, [], model, setup)
        await load._wait(setup, setup_timeout)
        say(f"load: encrypting {transfers} amounts and signing their transactions")
        load._planned = await load._plan(transfers, pairs, random.Random(seed), token)
        return load

    async def _plan(self, count: int, pairs: int, rng: random.Random, token: Any) -> list[_Planned]:
        backend = self._chain.backend
        moves = []
        for i in range(count):
            pair, rnd = i % pairs, i // pairs
            a, b = self.accounts[2 * pair], self.accounts[2 * pair + 1]
            sender, to = (a, b) if rnd % 2 == 0 else (b, a)
            amount = rng.randint(1, 300) if rng.random() < 0.8 else rng.randint(301, 5_000)
            moves.append((sender, to, amount))
        gate = asyncio.Semaphore(16)

        async def encrypt(sender: LocalAccount, amount: int) -> Any:
            async with gate:
                while True:
                    try:
                        return await self._nox.encrypt_input(
                            amount,
                            EUINT256,
                            owner=to_bytes20(sender.address),
                            application=to_bytes20(token.address),
                        )
                    except RateLimited:  # the gateway's per-client limit: respect it
                        await asyncio.sleep(0.25)

        inputs = await asyncio.gather(*(encrypt(s, amount) for s, _, amount in moves))
        if not moves:
            return []
        first = token.functions.transfer(moves[0][1].address, inputs[0].handle, inputs[0].proof)
        # anvil: against the pending block, whose timestamp is not behind the proof's
        # (the latest block may be); eth-tester estimates only against the latest
        block = "pending" if getattr(backend, "url", None) else "latest"
        estimate = await asyncio.to_thread(first.estimate_gas, {"from": moves[0][0].address}, block)
        gas = int(estimate) * 3 // 2 + 50_000
        fee = await asyncio.to_thread(lambda: int(backend.w3.eth.gas_price))
        nonces: dict[str, int] = {}
        planned = []
        for i, ((sender, to, amount), encrypted) in enumerate(zip(moves, inputs, strict=True)):
            if sender.address not in nonces:
                nonces[sender.address] = await asyncio.to_thread(
                    backend.w3.eth.get_transaction_count, sender.address, "pending"
                )
            call = token.functions.transfer(to.address, encrypted.handle, encrypted.proof)
            tx = call.build_transaction(
                {
                    "from": sender.address,
                    "nonce": nonces[sender.address],
                    "gas": gas,
                    "maxFeePerGas": 4 * fee + 10**9,
                    "maxPriorityFeePerGas": 10**9,
                    "chainId": backend.chain_id,
                }
            )
            nonces[sender.address] += 1
            signed = sender.sign_transaction(tx)
            planned.append(
                _Planned(i, sender, to, amount, bytes(signed.raw_transaction), bytes(signed.hash))
            )
        return planned

    # ------------------------------------------------------------------ sending

    @property
    def remaining(self) -> int:
        """Signed transactions not sent yet."""
        return len(self._planned) - len(self.sent)

    async def send(self, count: int | None = None, *, rate: float = 0.0) -> list[SentTransfer]:
        """Send the next `count` transactions (default all left), back to back or at `rate`
        per second, in one worker thread; record when each was mined."""
        start = len(self.sent)
        batch = self._planned[start : start + (self.remaining if count is None else count)]
        backend = self._chain.backend
        url = getattr(backend, "url", None)
        post = _RawSender(url) if url else None

        def run() -> list[SentTransfer]:
            out: list[SentTransfer] = []
            begin = time.perf_counter()
            k = 0
            while k < len(batch):
                # paced: one at its time; back to back: up to 25 in one JSON-RPC batch
                group = batch[k : k + (1 if rate > 0 else 25)]
                if rate > 0:
                    time.sleep(max(0.0, begin + k / rate - time.perf_counter()))
                if post is not None:
                    post.send([p.raw for p in group])
                else:
                    for plan in group:
                        backend.w3.eth.send_raw_transaction(plan.raw)
                mined = time.time()
                out.extend(
                    SentTransfer(
                        p.index, p.sender.address, p.to.address, p.amount, p.tx_hash,
                        task_id_for(backend.chain_id, p.tx_hash), mined,
                    )
                    for p in group
                )  # fmt: skip
                k += len(group)
            if post is not None:
                post.close()
            return out

        sent = await asyncio.to_thread(run)
        self.sent.extend(sent)
        return sent

    # ------------------------------------------------------------------ completion

    async def wait_stored(self, timeout: float) -> dict[bytes, float]:  # noqa: ASYNC109
        """Until every sent task is in the gateway's store; task id -> time.time() it was
        first seen there (polled every 20 ms). TimeoutError after `timeout` seconds."""
        return await self._wait([s.task_id for s in self.sent], timeout)

    async def _wait(self, task_ids: Sequence[bytes], seconds: float) -> dict[bytes, float]:
        pending = set(task_ids)
        seen: dict[bytes, float] = {}
        deadline = time.monotonic() + seconds
        while pending:
            found = await asyncio.to_thread(self._stored_among, sorted(pending))
            now = time.time()
            for task_id in found:
                seen[task_id] = now
            pending -= found
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} of {len(task_ids)} tasks not stored")
            await asyncio.sleep(_POLL_SECONDS)
        return seen

    def _stored_among(self, task_ids: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for i in range(0, len(task_ids), 500):
            stmt = select(TASKS.c.task_id).where(TASKS.c.task_id.in_(task_ids[i : i + 500]))
            try:
                with self._engine.connect() as conn:
                    found.update(bytes(t) for t in conn.execute(stmt).scalars())
            except OperationalError:  # SQLite busy while the gateway writes: next poll
                continue
        return found

    # ------------------------------------------------------------------ verification

    async def verify(self) -> LoadReport:
        """Decrypt and compare every balance and transferred amount; count stored outputs."""
        backend = self._chain.backend
        compute = ComputeClient(backend, self._chain.deployment.compute)
        report = LoadReport(tasks_sent=len(self.sent), tasks_stored=0)
        receipts = await asyncio.to_thread(
            lambda: [backend.w3.eth.get_transaction_receipt(HexBytes(s.tx_hash)) for s in self.sent]
        )
        expected_outputs: dict[bytes, int] = {}
        moved: dict[str, list[tuple[SentTransfer, bytes]]] = {}
        # The reference follows the chain's order: transactions of different senders sent
        # together may be mined in any order (nonces order only one sender's).
        model = TokenModel(dict(self.model.balances), self.model.total_supply)
        mined = sorted(
            zip(self.sent, receipts, strict=True),
            key=lambda sr: (int(sr[1]["blockNumber"]), int(sr[1]["transactionIndex"])),
        )
        for sent, receipt in mined:
            if receipt["status"] != 1:
                report.reverted.append(sent.tx_hash)
                continue
            self.moved[sent.index] = model.transfer(sent.sender, sent.to, sent.amount)
            ops = compute.operations(receipt)
            expected_outputs[sent.task_id] = sum(len(op.outputs) for op in ops)
            for op in ops:
                if op.operator == Operator.TRANSFER:
                    moved.setdefault(sent.sender, []).append((sent, op.outputs[2]))
        counts = await asyncio.to_thread(self._output_counts, list(expected_outputs))
        for task_id, want in expected_outputs.items():
            got = counts.get(task_id)
            if got is None or got < want:
                report.missing.append(task_id)
            elif got > want:
                report.duplicated.append(task_id)
            if got is not None:
                report.tasks_stored += 1
        by_address: dict[str, LocalAccount] = {a.address: a for a in self.accounts}
        token = backend.contract(load_artifact("ConfidentialToken"), self._token)
        for account in self.accounts:
            handle = bytes(await asyncio.to_thread(token.functions.balanceOf(account.address).call))
            await self._check(report, account, {handle: model.balances[account.address]}, "balance")
        for sender, items in moved.items():
            moved_values = {h: self.moved[s.index] for s, h in items}
            await self._check(report, by_address[sender], moved_values, "transferred")
        return report

    async def _check(
        self, report: LoadReport, account: LocalAccount, want: dict[bytes, int], what: str
    ) -> None:
        signer = AccountSigner(account)
        values: dict[bytes, object]
        try:
            values = dict(await self._nox.decrypt(list(want), user_key=signer))
        except NoxError:  # one handle spoils the batch: find which, one at a time
            values = {}
            for handle in want:
                try:
                    values.update(await self._nox.decrypt([handle], user_key=signer))
                except NoxError as exc:
                    values[handle] = f"not decryptable ({exc.reason})"
        for handle, expected in want.items():
            report.values_checked += 1
            if values.get(handle) != expected:
                report.wrong.append(
                    f"{what} of {to_checksum(account.address)} (0x{handle.hex()[:16]}…): "
                    f"decrypted {values.get(handle)!r}, expected {expected}"
                )

    def _output_counts(self, task_ids: list[bytes]) -> dict[bytes, int]:
        """Stored output handles per task id (only tasks with a task row)."""
        counts: dict[bytes, int] = {}
        with self._engine.connect() as conn:
            for i in range(0, len(task_ids), 500):
                chunk = task_ids[i : i + 500]
                stored = set(
                    bytes(t)
                    for t in conn.execute(
                        select(TASKS.c.task_id).where(TASKS.c.task_id.in_(chunk))
                    ).scalars()
                )
                for task_id in stored:
                    counts[task_id] = 0
                rows = conn.execute(
                    select(HANDLES.c.origin_task).where(HANDLES.c.origin_task.in_(chunk))
                ).scalars()
                for origin in rows:
                    counts[bytes(origin)] = counts.get(bytes(origin), 0) + 1
        return counts

    def close(self) -> None:
        self._engine.dispose()


class _RawSender:
    """eth_sendRawTransaction over JSON-RPC batches (one HTTP request for several
    transactions; anvil mines each in its own block, in order)."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(timeout=30)
        self._url = url
        self._id = 0

    def send(self, raws: Sequence[bytes]) -> None:
        body = []
        for raw in raws:
            self._id += 1
            body.append(
                {
                    "jsonrpc": "2.0",
                    "id": self._id,
                    "method": "eth_sendRawTransaction",
                    "params": ["0x" + raw.hex()],
                }
            )
        answers = self._client.post(self._url, json=body).json()
        errors = [a["error"] for a in answers if "error" in a]
        if errors or len(answers) != len(raws):
            raise DemoFailed(f"the chain refused transactions: {errors[:3]}")

    def close(self) -> None:
        self._client.close()


def _store_url(net: Devnet) -> str:
    return net.settings.store_url or f"sqlite:///{net.state_dir / 'gateway.sqlite3'}"
