"""A publisher that keeps transaction messages in memory while NATS is down.

The ingestor must not lose a transaction because NATS restarts, and must not reorder them
(orchestrators see transactions of a chain in the order the chain made them, as long as they
are not redelivered). `BufferedPublisher` publishes in order; when NATS is unreachable it keeps
the message (and every later one) in a bounded in-memory buffer and flushes it, still in
order, as soon as the connection is back (on the reconnect callback, and on a retry timer).
When the buffer is full, `publish` raises PublishBufferFull and the ingestor pauses its scan
(as the reference ingestor does with its 1000-message buffer).

The buffer is memory only: the ingestor must not persist its block cursor past a message that
is still buffered (`on_published` tells it when each message is stored).

Squatting. The transaction id is computable by anyone who sees the pending transaction, so a
"duplicate" answer may mean somebody else stored something under it first. With `is_own`,
the publisher reads the stored message back (the duplicate's PubAck names its sequence) and,
unless `is_own(pending, stored)` says it carries the same transaction, publishes the message
again under its payload id (`payload_msg_id`), which nobody can have taken before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nox.errors import NoxError
from nox.queue.connection import QueueConnection
from nox.queue.exceptions import (
    InvalidQueueSettings,
    PublishBufferFull,
    QueueMessageTooLarge,
    QueueUnavailable,
)
from nox.queue.metrics import QueueMetrics
from nox.queue.stream import (
    PublishResult,
    normalize_tx_hash,
    payload_msg_id,
    publish_transaction,
    stored_message,
    transaction_msg_id,
)
from nox.rpc.logging import module_logger

__all__ = ["BufferedPublisher", "PendingTransaction"]

_log = module_logger("nox.queue")


@dataclass(frozen=True)
class PendingTransaction:
    """A transaction message waiting to be published."""

    chain_id: int
    tx_hash: str
    data: bytes
    headers: tuple[tuple[str, str], ...] = ()


class BufferedPublisher:
    """Publishes transactions in order, buffering (bounded) while NATS is unreachable."""

    def __init__(
        self,
        conn: QueueConnection,
        *,
        max_buffered: int = 1000,
        retry_interval: float = 1.0,
        metrics: QueueMetrics | None = None,
        on_published: Callable[[PendingTransaction, PublishResult], None] | None = None,
        is_own: Callable[[PendingTransaction, bytes], bool] | None = None,
    ) -> None:
        if max_buffered < 1 or retry_interval <= 0:
            raise InvalidQueueSettings("max_buffered must be >= 1 and retry_interval positive")
        self._conn = conn
        self._max = max_buffered
        self._retry_interval = retry_interval
        self._metrics = metrics
        self._on_published = on_published
        self._is_own = is_own
        self.republished = 0
        """Messages published again under their payload id (their id was squatted)."""
        self._buffer: deque[PendingTransaction] = deque()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None
        conn.on_reconnected(self._on_reconnected)

    @property
    def pending(self) -> int:
        """Messages buffered and not yet stored by JetStream."""
        return len(self._buffer)

    @property
    def full(self) -> bool:
        return len(self._buffer) >= self._max

    async def publish(
        self,
        chain_id: int,
        tx_hash: bytes | str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
    ) -> PublishResult | None:
        """Publish after everything buffered before it; None when it had to be buffered.

        Raises PublishBufferFull (the message is not taken) when the buffer is full, and the
        errors of a malformed message (bad id, too large) before buffering anything.
        """
        transaction_msg_id(chain_id, tx_hash)  # validates chain id and hash now, not later
        if len(data) > self._conn.settings.max_msg_bytes:
            raise QueueMessageTooLarge(
                f"transaction message of {len(data)} bytes exceeds "
                f"{self._conn.settings.max_msg_bytes}"
            )
        item = PendingTransaction(
            chain_id, normalize_tx_hash(tx_hash), data, tuple(sorted((headers or {}).items()))
        )
        async with self._lock:
            if self.full:
                await self._flush_locked()
                if self.full:
                    raise PublishBufferFull(
                        f"{len(self._buffer)} transaction messages buffered while NATS is down"
                    )
            self._buffer.append(item)
            self._empty.clear()
            self._update_gauge()
            published = await self._flush_locked()
        if published and published[-1][0] is item:
            return published[-1][1]
        self._wake.set()
        return None

    async def flush(self) -> int:
        """Publish what is buffered, in order, until done or NATS fails; returns the count."""
        async with self._lock:
            return len(await self._flush_locked())

    async def drain(self) -> None:
        """Wait until every buffered message is stored (needs `start()` or `flush()` calls)."""
        await self._empty.wait()

    def start(self) -> None:
        """Run the background flusher (on reconnect, and every `retry_interval` seconds)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nox-queue-buffer-flusher")

    async def stop(self) -> None:
        """Stop the background flusher (buffered messages stay buffered)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._retry_interval)
            self._wake.clear()
            if self._buffer:
                try:
                    await self.flush()
                except NoxError as err:
                    # A refusal that is not unavailability (a misconfigured stream): keep the
                    # messages, say so, and try again later rather than end the flusher.
                    _log.error("publish_refused", reason=err.reason, error=err.message)

    async def _on_reconnected(self) -> None:
        self._wake.set()

    async def _flush_locked(self) -> list[tuple[PendingTransaction, PublishResult]]:
        done: list[tuple[PendingTransaction, PublishResult]] = []
        while self._buffer:
            head = self._buffer[0]
            try:
                result = await publish_transaction(
                    self._conn,
                    head.chain_id,
                    head.tx_hash,
                    head.data,
                    headers=dict(head.headers),
                    metrics=self._metrics,
                )
                if result.duplicate and self._is_own is not None:
                    result = await self._claim_back(head, result)
            except QueueUnavailable as err:
                _log.info("publish_buffered", pending=len(self._buffer), error=err.message)
                break
            self._buffer.popleft()
            done.append((head, result))
            if self._on_published is not None:
                self._on_published(head, result)
        self._update_gauge()
        if not self._buffer:
            self._empty.set()
        return done

    async def _claim_back(self, item: PendingTransaction, dup: PublishResult) -> PublishResult:
        """A duplicate: keep it if the stored message is ours, else publish under the
        payload id (the stored one is parked by the orchestrators as QUEUE_MESSAGE_ID_MISMATCH, or
        UNDECODABLE when it is not even a signed message)."""
        assert self._is_own is not None
        stored = await stored_message(self._conn, dup.seq)
        if stored is not None and (stored == item.data or self._is_own(item, stored)):
            return dup
        self.republished += 1
        if self._metrics is not None:
            self._metrics.squatted.inc()
        _log.warning("msg_id_squatted", tx=item.tx_hash, msg_id=dup.msg_id, seq=dup.seq)
        return await publish_transaction(
            self._conn, item.chain_id, item.tx_hash, item.data, headers=dict(item.headers),
            metrics=self._metrics, msg_id=payload_msg_id(item.data),
        )  # fmt: skip

    def _update_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.buffered.set(len(self._buffer))
