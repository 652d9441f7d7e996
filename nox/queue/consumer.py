"""The durable pull consumer every orchestrator instance shares, and the lease on a message.

All orchestrators bind the same durable consumer (`settings.durable`, explicit ack): JetStream
hands each message to one of them at a time, so scaling out is running more of them. A
delivered message is leased for `ack_wait` seconds; the holder keeps it with in-progress acks
(`Lease.progress`, or the `keep_alive` helper while a runner's lease runs), and settles it
once: `ack` (done: the gateway stored the results), `nak` (retry later), `term` (give up, the
effect is recorded elsewhere) or `park` (poison: copied to the dead-letter subject with its
reason, then terminated). A holder that dies simply stops sending in-progress acks: after
`ack_wait` JetStream redelivers to another instance.

Poison handling. `settings.max_deliver` (M) is the number of processing attempts. The server
consumer allows M + 1 deliveries: a `nak` on attempt M parks the message with reason
MAX_DELIVERIES_EXCEEDED instead, and a delivery number M + 1 (attempt M was lost: its holder
died) is parked on arrival without being handed out. A message the decoder rejects is parked with
reason UNDECODABLE, and one whose JetStream id does not belong to its decoded content (the
`check_id` hook: for the orchestrator, the id of the signed transaction) with reason
QUEUE_MESSAGE_ID_MISMATCH. Nothing is redelivered forever and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from nox.errors import InvalidArgument, NoxError, PermissionDenied, Unauthenticated
from nox.queue._errors import TRANSIENT
from nox.queue.connection import QueueConnection
from nox.queue.dlq import (
    REASON_MAX_DELIVERIES,
    REASON_MSG_ID_MISMATCH,
    REASON_UNDECODABLE,
    park_message,
)
from nox.queue.exceptions import (
    ConsumerNotStarted,
    LeaseSettled,
    MessageIdMismatch,
    QueueUnavailable,
    StreamConfigConflict,
)
from nox.queue.metrics import QueueMetrics
from nox.rpc.logging import module_logger

__all__ = ["Lease", "TxConsumer", "consumer_config", "ensure_consumer", "keep_alive"]

T = TypeVar("T")

_log = module_logger("nox.queue")

# Errors a decoder raises for a message that can never be processed (bad bytes, bad or
# unknown signer). Any other NoxError (a registry that is unreachable) is retried instead.
_POISON_ERRORS: tuple[type[NoxError], ...] = (InvalidArgument, Unauthenticated, PermissionDenied)


def consumer_config(conn: QueueConnection) -> api.ConsumerConfig:
    settings = conn.settings
    return api.ConsumerConfig(
        name=settings.durable,
        durable_name=settings.durable,
        description="Nox orchestrators: shared work queue of transaction messages",
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait,
        # One delivery more than the processing attempts: the extra one parks the message.
        max_deliver=settings.max_deliver + 1,
        filter_subject=settings.tx_subjects,
        max_ack_pending=settings.max_ack_pending,
        replay_policy=api.ReplayPolicy.INSTANT,
    )


async def ensure_consumer(conn: QueueConnection) -> None:
    """Create the shared durable consumer, or update it to the settings (idempotent)."""
    try:
        await conn.js.add_consumer(conn.settings.stream, consumer_config(conn))
    except nats.js.errors.ServiceUnavailableError as err:
        raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
    except nats.js.errors.APIError as err:
        raise StreamConfigConflict(
            f"consumer {conn.settings.durable} cannot be set up: {err.description} ({err.err_code})"
        ) from err
    except TRANSIENT as err:
        raise QueueUnavailable(f"JetStream unreachable: {type(err).__name__}") from err


class Lease(Generic[T]):
    """One delivered message, held until settled exactly once."""

    def __init__(self, owner: TxConsumer[T], msg: Msg, value: T) -> None:
        self._owner = owner
        self._msg = msg
        self.value = value
        meta = msg.metadata
        self.subject: str = msg.subject
        self.stream_seq: int = meta.sequence.stream
        self.delivery_count: int = meta.num_delivered
        self.headers: dict[str, str] = dict(msg.headers or {})
        self.data: bytes = bytes(msg.data)
        self._settled: str | None = None

    def __repr__(self) -> str:  # the payload is not printed
        return (
            f"Lease(subject={self.subject!r}, seq={self.stream_seq},"
            f" delivery={self.delivery_count})"
        )

    @property
    def msg_id(self) -> str:
        return self.headers.get("Nats-Msg-Id", "")

    @property
    def last_attempt(self) -> bool:
        """True on attempt `max_deliver`: a `nak` now parks the message."""
        return self.delivery_count >= self._owner.settings.max_deliver

    @property
    def settled(self) -> str | None:
        """How the lease ended ("ack", "nak", "term", "park:<REASON>"), None while held."""
        return self._settled

    async def progress(self) -> None:
        """In-progress ack: restart this message's `ack_wait` (call well within it)."""
        self._require_held()
        self._require_connected()
        try:
            await self._msg.in_progress()
        except TRANSIENT as err:
            raise QueueUnavailable(f"in-progress ack failed: {type(err).__name__}") from err

    async def ack(self) -> None:
        """Acknowledge (done) and wait for JetStream to confirm it."""
        self._require_held()
        self._require_connected()
        try:
            await self._msg.ack_sync(timeout=self._owner.settings.publish_timeout)
        except TRANSIENT as err:
            raise QueueUnavailable(f"ack not confirmed: {type(err).__name__}") from err
        self._settled = "ack"

    async def nak(self, delay: float | None = None, *, detail: str = "") -> None:
        """Ask for redelivery (after `delay` seconds); on the last attempt, park instead."""
        self._require_held()
        if self.last_attempt:
            await self.park(REASON_MAX_DELIVERIES, detail or "failed on the last attempt")
            return
        self._require_connected()
        try:
            await self._msg.nak(delay=delay)
        except TRANSIENT as err:
            raise QueueUnavailable(f"nak failed: {type(err).__name__}") from err
        self._settled = "nak"

    async def term(self) -> None:
        """Stop redeliveries without parking: only when the effect is recorded elsewhere."""
        self._require_held()
        self._require_connected()
        try:
            await self._msg.term()
        except TRANSIENT as err:
            raise QueueUnavailable(f"term failed: {type(err).__name__}") from err
        self._settled = "term"

    async def park(self, reason: str, detail: str = "") -> None:
        """Copy to the dead-letter subject with `reason` (UPPER_SNAKE), then terminate."""
        self._require_held()
        await self._owner.park(self._msg, reason, detail)
        self._settled = f"park:{reason}"

    def keep_alive(
        self, interval: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Send in-progress acks every `interval` s (default ack_wait / 3) inside the block."""
        return keep_alive(self, interval)

    def _require_held(self) -> None:
        if self._settled is not None:
            raise LeaseSettled(f"message {self.stream_seq} already settled ({self._settled})")

    def _require_connected(self) -> None:
        if not self._owner.conn.connected:
            raise QueueUnavailable("not connected to NATS")


@contextlib.asynccontextmanager
async def keep_alive(lease: Lease[T], interval: float | None = None) -> AsyncIterator[None]:
    """Keep `lease` from expiring while the block runs (in-progress ack every `interval`).

    A failed in-progress ack (NATS briefly down) is logged and retried on the next tick; if
    the lease does expire meanwhile, JetStream redelivers and the work is repeated, which the
    gateway's idempotent storage makes harmless.
    """
    period = interval if interval is not None else lease._owner.settings.ack_wait / 3

    async def beat() -> None:
        while lease.settled is None:
            await asyncio.sleep(period)
            if lease.settled is not None:
                return
            try:
                await lease.progress()
            except QueueUnavailable as err:
                _log.warning("lease_progress_failed", seq=lease.stream_seq, error=err.message)
            except LeaseSettled:
                return

    task = asyncio.create_task(beat(), name=f"nox-queue-keepalive-{lease.stream_seq}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TxConsumer(Generic[T]):
    """A handle on the shared durable consumer for one orchestrator instance.

    `decode` turns a message's bytes into the caller's value (for the orchestrator: verify the
    ingestor's signature, parse the TransactionMessage). It raises InvalidArgument,
    Unauthenticated or PermissionDenied for a message that can never be processed (parked as
    UNDECODABLE); any other NoxError is treated as transient (the message is naked).
    `check_id(value, msg_id, data)` raises MessageIdMismatch when the message was stored
    under an id that is not its own (parked as QUEUE_MESSAGE_ID_MISMATCH).
    """

    def __init__(
        self,
        conn: QueueConnection,
        *,
        decode: Callable[[bytes], T],
        metrics: QueueMetrics,
        clock: Callable[[], float] = time.time,
        retry_delay: float = 1.0,
        check_id: Callable[[T, str, bytes], None] | None = None,
    ) -> None:
        self.conn = conn
        self._check_id = check_id
        self.settings = conn.settings
        self._decode = decode
        self._metrics = metrics
        self._clock = clock
        self._retry_delay = retry_delay
        self._sub: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        """Make sure the durable consumer exists and bind to it."""
        await ensure_consumer(self.conn)
        try:
            self._sub = await self.conn.js.pull_subscribe_bind(
                durable=self.settings.durable, stream=self.settings.stream
            )
        except TRANSIENT as err:
            raise QueueUnavailable(f"cannot bind the consumer: {type(err).__name__}") from err

    async def close(self) -> None:
        """Unbind (the durable consumer and its unacked messages stay on the server)."""
        sub, self._sub = self._sub, None
        if sub is not None and not self.conn.nc.is_closed:
            with contextlib.suppress(*TRANSIENT, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()

    async def fetch(self, batch: int = 1, wait: float = 1.0) -> list[Lease[T]]:
        """Up to `batch` leases, waiting at most about `wait` s; [] when nothing came.

        Poison messages met on the way are parked here and not returned. Raises
        QueueUnavailable while NATS is unreachable (the caller waits and calls again).
        """
        if self._sub is None:
            raise ConsumerNotStarted("consumer not started: call start() first")
        if not self.conn.connected:
            raise QueueUnavailable("not connected to NATS")
        try:
            msgs = await self._sub.fetch(batch=batch, timeout=wait)
        except TimeoutError:
            # nats.errors.TimeoutError (nothing came), or asyncio's own when the client's
            # wait ends on a loaded machine before it converts it: either way, nothing came
            return []
        except nats.js.errors.ServiceUnavailableError as err:
            raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
        except TRANSIENT as err:
            raise QueueUnavailable(f"fetch failed: {type(err).__name__}") from err
        leases: list[Lease[T]] = []
        for msg in msgs:
            lease = await self._admit(msg)
            if lease is not None:
                leases.append(lease)
        return leases

    async def park(self, msg: Msg, reason: str, detail: str = "") -> None:
        await park_message(self.conn, msg, reason, detail, metrics=self._metrics, clock=self._clock)
        _log.warning(
            "message_parked",
            reason=reason,
            subject=msg.subject,
            seq=msg.metadata.sequence.stream,
            deliveries=msg.metadata.num_delivered,
        )

    async def _admit(self, msg: Msg) -> Lease[T] | None:
        """Decode a delivered message into a lease, or settle it here if it is poison."""
        delivered = msg.metadata.num_delivered
        self._metrics.deliveries.labels("true" if delivered > 1 else "false").inc()
        try:
            if delivered > self.settings.max_deliver:
                await self.park(
                    msg, REASON_MAX_DELIVERIES, f"lease lost on attempt {delivered - 1}"
                )
                return None
            try:
                value = self._decode(bytes(msg.data))
                if self._check_id is not None:
                    msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                    self._check_id(value, msg_id, bytes(msg.data))
            except MessageIdMismatch as err:
                await self.park(msg, REASON_MSG_ID_MISMATCH, err.message)
                return None
            except _POISON_ERRORS as err:
                await self.park(msg, REASON_UNDECODABLE, f"{err.reason}: {err.message}")
                return None
            except NoxError as err:
                # Transient (say the registry is unreachable): retry later, like a failed task.
                detail = f"{err.reason}: {err.message}"
                if delivered >= self.settings.max_deliver:
                    await self.park(msg, REASON_MAX_DELIVERIES, detail)
                else:
                    try:
                        await msg.nak(delay=self._retry_delay)
                    except TRANSIENT as nak_err:
                        raise QueueUnavailable(type(nak_err).__name__) from nak_err
                return None
        except QueueUnavailable as err:
            # Not settled: JetStream redelivers it after ack_wait and we try again then.
            _log.warning("poison_not_settled", seq=msg.metadata.sequence.stream, error=err.message)
            return None
        return Lease(self, msg, value)
