"""The ingestor: NoxCompute logs -> one signed TransactionMessage per transaction -> JetStream.

Each step reads one batch of confirmed blocks (`head - confirmations`), groups the Operation
logs per transaction in log order, signs each message with the ingestor's enclave key as a
broadcast (audience NoxCompute, valid for the stream's maximum age) and publishes it with
message id keccak256("<chainId>:<txHash>"): a block read twice (restart, rewind, a second
ingestor) is stored once by JetStream. While NATS is down the publisher buffers and the scan
pauses; the cursor is saved only after every message of the batch is stored, so a crash
re-reads (and JetStream deduplicates) instead of losing a transaction.

Squatting (docs/queue.md): when JetStream answers "duplicate", the publisher reads the stored
message back and keeps it only if it is a valid envelope, signed by this ingestor (or, with
`authorize_peer`, by another active ingestor), of the same TransactionMessage; otherwise the
message is published again under its payload id so the transaction is still computed.

Reorgs: before each step the stored hashes of recent published-from blocks are compared with
the chain. If one changed, the cursor is rewound to just above the highest block still
canonical and those blocks are read again. Messages of orphaned transactions may already be in
the stream: orchestrators withdraw them (they check the block hash against the canonical chain
before assigning and before storing; TASK_STATE_WITHDRAWN, reason TRANSACTION_ORPHANED).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter, Gauge
from web3.exceptions import Web3Exception

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import RELAYED
from nox.errors import NoxError, PermissionDenied
from nox.ingestor.config import IngestorSettings
from nox.ingestor.cursor import Cursor, CursorStore
from nox.ingestor.exceptions import CursorMissing, EventMalformed, InvalidIngestorSettings
from nox.ingestor.source import BlockRef, ChainSource, build_messages
from nox.queue import (
    BufferedPublisher,
    PendingTransaction,
    PublishBufferFull,
    QueueConnection,
    QueueMessageTooLarge,
    QueueMetrics,
)
from nox.rpc.logging import module_logger
from nox.v1 import task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["Ingestor", "IngestorMetrics"]

_log = module_logger("nox.ingestor")
T = TypeVar("T")


class IngestorMetrics:
    """Prometheus metrics of the ingestor, on a registry the service passes in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.transactions = Counter(
            "nox_ingestor_transactions", "Transaction messages handed to JetStream.",
            registry=registry,
        )  # fmt: skip
        self.reorgs = Counter(
            "nox_ingestor_reorgs", "Reorgs detected (cursor rewound).", registry=registry
        )
        self.oversized = Counter(
            "nox_ingestor_oversized",
            "Transactions too large for one queue message (logged, not published).",
            registry=registry,
        )
        self.next_block = Gauge(
            "nox_ingestor_next_block", "The next block the ingestor reads.", registry=registry
        )


class Ingestor:
    """See the module docstring."""

    def __init__(
        self,
        *,
        settings: IngestorSettings,
        key: EnclaveKey,
        source: ChainSource,
        cursor: CursorStore,
        conn: QueueConnection,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        authorize_peer: Callable[[bytes, int], object] | None = None,
    ) -> None:
        self.settings = settings
        self.key = key
        self.source = source
        self.store = cursor
        self.conn = conn
        self.clock = clock
        self.domain = Domain(settings.chain_id, settings.registry_address)
        registry = registry if registry is not None else CollectorRegistry()
        self.metrics = IngestorMetrics(registry)
        self.queue_metrics = QueueMetrics(registry)
        self._authorize_peer = authorize_peer
        self.publisher = BufferedPublisher(
            conn, max_buffered=settings.max_buffered, retry_interval=settings.retry_delay,
            metrics=self.queue_metrics, is_own=self.is_own,
        )  # fmt: skip
        self.cursor: Cursor | None = None
        self.published = 0
        """Transaction messages handed to JetStream by this instance."""

    def is_own(self, item: PendingTransaction, stored: bytes) -> bool:
        """Whether `stored` (found under `item`'s message id) carries the same transaction:
        a valid envelope for NoxCompute, signed by this ingestor or an authorized peer
        ingestor, whose TransactionMessage equals the one in `item`."""
        try:
            mine = SignedEnvelope.FromString(item.data)
            theirs = SignedEnvelope.FromString(stored)
            expected = task_pb2.TransactionMessage.FromString(mine.payload)
        except DecodeError:
            return False
        now = int(self.clock())

        def authorize(signer: bytes) -> None:
            if signer == self.key.address:
                return
            if self._authorize_peer is None:
                raise PermissionDenied("signed by another key")
            self._authorize_peer(signer, now)

        try:
            verified = verify_envelope(
                theirs, task_pb2.TransactionMessage, domain=self.domain,
                audience=self.settings.compute_address, now=now, replay=RELAYED,
                max_ttl=self.settings.message_ttl, authorize=authorize,
            )  # fmt: skip
        except NoxError:
            return False
        return bool(verified.message == expected)

    def load(self) -> Cursor:
        """Load the cursor, or start at `initial_block`; refuse to guess otherwise."""
        cursor = self.store.load()
        if cursor is None:
            if self.settings.initial_block is None:
                raise CursorMissing("no stored cursor: set initial_block for the first start")
            cursor = Cursor(self.settings.initial_block, {})
        self.cursor = cursor
        self.metrics.next_block.set(cursor.next_block)
        return cursor

    async def _chain(self, fn: Callable[..., T], *args: object) -> T:
        if self.settings.threaded_chain_calls:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def run(self, stop: asyncio.Event) -> None:
        """Step until `stop` is set; chain and queue outages are waited out."""
        if self.cursor is None:
            self.load()
        self.publisher.start()
        try:
            while not stop.is_set():
                try:
                    worked = await self.step()
                except (OSError, Web3Exception, EventMalformed) as err:
                    _log.warning("ingest_retry", error=type(err).__name__)
                    worked = False
                if not worked:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_interval)
        finally:
            await self.publisher.stop()

    async def step(self) -> bool:
        """Read and publish one batch; True if the cursor moved (so call again at once)."""
        cursor = self.cursor if self.cursor is not None else self.load()
        s = self.settings
        if await self._rewind_on_reorg(cursor):
            return True
        cursor = self.cursor or cursor
        head = await self._chain(self.source.head)
        last_safe = head - s.confirmations
        start = cursor.next_block
        if start > last_safe:
            return False
        end = min(last_safe, start + s.batch_blocks - 1)
        blocks = await self._publish_blocks(start, end)
        if blocks is None:
            return False
        recent = {n: h for n, h in cursor.recent.items() if n > end - s.reorg_window}
        recent.update({n: b.hash for n, b in blocks.items()})
        self.store.save(end + 1, list(blocks.values()), keep_after=end - s.reorg_window)
        self.cursor = Cursor(end + 1, recent)
        self.metrics.next_block.set(end + 1)
        return True

    async def _publish_blocks(self, start: int, end: int) -> dict[int, BlockRef] | None:
        """Sign and publish the transactions of blocks start..end and wait until JetStream
        stored them all; the blocks read, or None when the chain does not have them yet."""
        s = self.settings
        logs = await self._chain(self.source.operation_logs, start, end)
        numbers = sorted({log.block_number for log in logs} | {end})
        found = await self._chain(self.source.blocks, numbers)
        blocks: dict[int, BlockRef] = {}
        for n in numbers:
            ref = found.get(n)
            if ref is None:
                return None
            blocks[n] = ref
        messages = build_messages(
            logs, blocks, chain_id=s.chain_id, compute_address=s.compute_address
        )
        now = int(self.clock())
        for msg in messages:
            env = sign_envelope(
                self.key, msg, domain=self.domain, audience=s.compute_address, now=now,
                ttl=s.message_ttl,
            )  # fmt: skip
            await self._publish(msg.transaction_hash, env.SerializeToString())
        # pause until JetStream stored everything (the flusher retries meanwhile)
        await self.publisher.drain()
        return blocks

    async def reingest(self, from_block: int, to_block: int) -> int:
        """Publish the transactions of blocks from_block..to_block again, without touching
        the cursor (docs/operations.md): what JetStream still holds deduplicates (and is
        checked to be the same transaction), the rest is computed again, which the
        gateway's idempotent storage makes harmless. Returns the messages handed over."""
        if from_block < 0 or to_block < from_block:
            raise InvalidIngestorSettings("reingest needs 0 <= from_block <= to_block")
        before = self.published
        self.publisher.start()
        try:
            start = from_block
            while start <= to_block:
                end = min(to_block, start + self.settings.batch_blocks - 1)
                if await self._publish_blocks(start, end) is None:
                    raise InvalidIngestorSettings(f"the chain has no block {end} yet")
                start = end + 1
        finally:
            await self.publisher.stop()
        return self.published - before

    async def _publish(self, tx_hash: bytes, data: bytes) -> None:
        while True:
            try:
                await self.publisher.publish(self.settings.chain_id, tx_hash, data)
            except PublishBufferFull:
                await self.publisher.drain()
                continue
            except QueueMessageTooLarge as err:
                self.metrics.oversized.inc()
                _log.error("transaction_too_large", tx="0x" + tx_hash.hex(), error=err.message)
                return
            self.metrics.transactions.inc()
            self.published += 1
            return

    async def _rewind_on_reorg(self, cursor: Cursor) -> bool:
        """If a remembered block is no longer canonical, rewind to the fork point."""
        if not cursor.recent:
            return False
        top = max(cursor.recent)
        current = await self._chain(self.source.block, top)
        if current is not None and current.hash == cursor.recent[top]:
            return False
        fork = None
        for n in sorted(cursor.recent, reverse=True):
            ref = await self._chain(self.source.block, n)
            if ref is not None and ref.hash == cursor.recent[n]:
                fork = n
                break
        resume = fork + 1 if fork is not None else min(cursor.recent)
        self.metrics.reorgs.inc()
        _log.warning("reorg_detected", rewind_to=resume, was=cursor.next_block)
        self.store.save(resume, forget_from=resume)
        self.cursor = Cursor(resume, {n: h for n, h in cursor.recent.items() if n < resume})
        self.metrics.next_block.set(resume)
        return True
