"""Parking poison messages: copy to the dead-letter subject with the reason, then terminate.

A parked message is never silently dropped: its original payload is published, unchanged,
on `<dlq_subject_prefix>.<chain>` (stream `dlq_stream`) with headers saying where it came
from and why it was parked, and only once JetStream has stored that copy is the original
terminated (`+TERM`, no more redeliveries). If the copy cannot be stored the original is left
alone and JetStream redelivers it; the dead-letter copy's message id `<stream>:<seq>` makes a
second parking of the same delivery a duplicate, so an operator sees each message once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import nats.js.errors
from nats.aio.msg import Msg

from nox.errors import InvalidArgument
from nox.queue._errors import TRANSIENT
from nox.queue.connection import QueueConnection
from nox.queue.exceptions import (
    MaxDeliveriesExceeded,
    MessageIdMismatch,
    QueueUnavailable,
    StreamConfigConflict,
)
from nox.queue.metrics import QueueMetrics
from nox.queue.stream import HEADER_CHAIN_ID, HEADER_MSG_ID, HEADER_TX_HASH

__all__ = [
    "HEADER_CONSUMER",
    "HEADER_DELIVERY_COUNT",
    "HEADER_DETAIL",
    "HEADER_ORIGINAL_MSG_ID",
    "HEADER_ORIGINAL_STREAM",
    "HEADER_ORIGINAL_SUBJECT",
    "HEADER_PARKED_AT",
    "HEADER_REASON",
    "HEADER_STREAM_SEQ",
    "REASON_MAX_DELIVERIES",
    "REASON_MSG_ID_MISMATCH",
    "REASON_UNDECODABLE",
    "ParkedMessage",
    "park_message",
]

REASON_UNDECODABLE = "UNDECODABLE"
# Park reasons of tasks are their error reasons (docs/api.md), declared once by their classes.
REASON_MAX_DELIVERIES = MaxDeliveriesExceeded.reason
REASON_MSG_ID_MISMATCH = MessageIdMismatch.reason
"""The message's id is not its signed transaction's (squatted or replayed under it)."""

HEADER_REASON = "Nox-Dlq-Reason"
HEADER_DETAIL = "Nox-Dlq-Detail"
HEADER_ORIGINAL_SUBJECT = "Nox-Original-Subject"
HEADER_ORIGINAL_STREAM = "Nox-Original-Stream"
HEADER_STREAM_SEQ = "Nox-Stream-Seq"
HEADER_DELIVERY_COUNT = "Nox-Delivery-Count"
HEADER_CONSUMER = "Nox-Consumer"
HEADER_PARKED_AT = "Nox-Parked-At"
HEADER_ORIGINAL_MSG_ID = "Nox-Original-Msg-Id"

_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_MAX_DETAIL = 512


@dataclass(frozen=True)
class ParkedMessage:
    """A message read back from the dead-letter stream (what an operator or a test sees)."""

    reason: str
    detail: str
    original_subject: str
    original_stream: str
    stream_seq: int
    delivery_count: int
    consumer: str
    parked_at: int
    original_msg_id: str
    data: bytes
    headers: dict[str, str]

    @classmethod
    def from_msg(cls, msg: Msg) -> ParkedMessage:
        headers = dict(msg.headers or {})
        try:
            return cls(
                reason=headers[HEADER_REASON],
                detail=headers.get(HEADER_DETAIL, ""),
                original_subject=headers[HEADER_ORIGINAL_SUBJECT],
                original_stream=headers[HEADER_ORIGINAL_STREAM],
                stream_seq=int(headers[HEADER_STREAM_SEQ]),
                delivery_count=int(headers[HEADER_DELIVERY_COUNT]),
                consumer=headers.get(HEADER_CONSUMER, ""),
                parked_at=int(headers[HEADER_PARKED_AT]),
                original_msg_id=headers.get(HEADER_ORIGINAL_MSG_ID, ""),
                data=bytes(msg.data),
                headers=headers,
            )
        except (KeyError, ValueError) as err:
            raise InvalidArgument("not a parked Nox message (missing reason headers)") from err


def _header_value(text: str) -> str:
    """One header line: no CR/LF (they would end the header block), bounded length."""
    flat = " ".join(text.split())
    return flat[:_MAX_DETAIL]


async def park_message(
    conn: QueueConnection,
    msg: Msg,
    reason: str,
    detail: str = "",
    *,
    metrics: QueueMetrics | None,
    clock: Callable[[], float],
) -> bool:
    """Copy `msg` to its dead-letter subject with `reason`, then terminate it.

    Returns False when the copy was a duplicate (this delivery had been parked before, and
    only its termination was lost). Raises QueueUnavailable if the copy cannot be stored (the
    original is then left for redelivery), InvalidArgument for a reason not in UPPER_SNAKE.
    """
    if not _REASON.match(reason):
        raise InvalidArgument(f"park reason must be UPPER_SNAKE, got {reason!r}")
    settings = conn.settings
    meta = msg.metadata
    original = dict(msg.headers or {})
    stream = meta.stream
    seq = meta.sequence.stream
    headers = {
        HEADER_MSG_ID: f"{stream}:{seq}",
        HEADER_REASON: reason,
        HEADER_DETAIL: _header_value(detail),
        HEADER_ORIGINAL_SUBJECT: msg.subject,
        HEADER_ORIGINAL_STREAM: stream,
        HEADER_STREAM_SEQ: str(seq),
        HEADER_DELIVERY_COUNT: str(meta.num_delivered),
        HEADER_CONSUMER: meta.consumer,
        HEADER_PARKED_AT: str(int(clock())),
    }
    if HEADER_MSG_ID in original:
        headers[HEADER_ORIGINAL_MSG_ID] = _header_value(original[HEADER_MSG_ID])
    for name in (HEADER_CHAIN_ID, HEADER_TX_HASH):
        if name in original:
            headers[name] = _header_value(original[name])
    subject = settings.dlq_subject(settings.chain_token_of(msg.subject))
    if not conn.connected:
        raise QueueUnavailable("not connected to NATS: cannot park the message")
    try:
        ack = await conn.js.publish(
            subject,
            bytes(msg.data),
            timeout=settings.publish_timeout,
            stream=settings.dlq_stream,
            headers=headers,
        )
        await msg.term()
    except nats.js.errors.ServiceUnavailableError as err:
        raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
    except nats.js.errors.APIError as err:
        raise StreamConfigConflict(
            f"dead-letter stream refused the message: {err.description} ({err.err_code})"
        ) from err
    except TRANSIENT as err:
        raise QueueUnavailable(f"parking failed: {type(err).__name__}") from err
    if metrics is not None and not ack.duplicate:
        metrics.parked.labels(reason).inc()
    return not ack.duplicate
