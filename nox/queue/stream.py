"""The transaction stream: idempotent set-up and deduplicated publication.

Two streams, both file-backed with limits retention:

- `settings.stream` (NOX_TX) on `<subject_prefix>.*`: one message per chain transaction on
  `<subject_prefix>.<chainId>`, with `Nats-Msg-Id` = 0x-hex keccak256("<chainId>:<txHash>")
  (DESIGN §8, as the reference ingestor), so a block read twice within the duplicate window is
  stored once. That id is computable by anyone who sees a pending transaction, so a
  publisher may have squatted it: the ingestor checks a duplicate's stored message and, if it
  is not its own, publishes under the payload id 0x-hex keccak256(signed message bytes)
  (`payload_msg_id`), which nobody can take before seeing the signed message. The
  orchestrator accepts a message only under one of those two ids (`check_msg_id`).
  Messages stay until `max_age` (acked or not) so an operator can audit or replay; the
  shared durable consumer tracks what is done.
- `settings.dlq_stream` (NOX_DLQ) on `<dlq_subject_prefix>.*`: parked poison messages. A
  separate stream keeps them out of the consumer's way, with their own (longer) retention.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats.js.errors
from nats.js import api

from nox.crypto.hashing import keccak256
from nox.queue._errors import TRANSIENT
from nox.queue.config import QueueSettings
from nox.queue.connection import QueueConnection
from nox.queue.exceptions import (
    InvalidTransactionId,
    MessageIdMismatch,
    QueueMessageTooLarge,
    QueueUnavailable,
    StreamConfigConflict,
)
from nox.queue.metrics import QueueMetrics

__all__ = [
    "HEADER_CHAIN_ID",
    "HEADER_MSG_ID",
    "HEADER_TX_HASH",
    "PublishResult",
    "check_msg_id",
    "ensure_streams",
    "normalize_tx_hash",
    "payload_msg_id",
    "publish_transaction",
    "stored_message",
    "transaction_msg_id",
]

HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_CHAIN_ID = "Nox-Chain-Id"
HEADER_TX_HASH = "Nox-Tx-Hash"

# JetStream API error codes (nats-server errors.json).
_ERR_STREAM_NAME_IN_USE = 10058
_ERR_MESSAGE_TOO_LARGE = 10054


@dataclass(frozen=True)
class PublishResult:
    """Where JetStream stored a message, and whether it was a duplicate of a stored one."""

    stream: str
    seq: int
    duplicate: bool
    msg_id: str


def normalize_tx_hash(tx_hash: bytes | str) -> str:
    """A transaction hash as 0x + 64 lowercase hex digits (as Ethereum clients print it)."""
    if isinstance(tx_hash, bytes):
        raw = tx_hash
    else:
        text = tx_hash[2:] if tx_hash[:2] in ("0x", "0X") else tx_hash
        try:
            raw = bytes.fromhex(text)
        except ValueError as err:
            raise InvalidTransactionId("transaction hash is not hex") from err
    if len(raw) != 32:
        raise InvalidTransactionId(f"transaction hash must be 32 bytes, got {len(raw)}")
    return "0x" + raw.hex()


def transaction_msg_id(chain_id: int, tx_hash: bytes | str) -> str:
    """`Nats-Msg-Id` of a transaction: 0x-hex keccak256(utf8("<chainId>:<0xtxHash>"))."""
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id < 0:
        raise InvalidTransactionId(f"invalid chain id {chain_id!r}")
    key = f"{chain_id}:{normalize_tx_hash(tx_hash)}"
    return "0x" + keccak256(key.encode()).hex()


def payload_msg_id(data: bytes) -> str:
    """The second id of a transaction message: 0x-hex keccak256(its signed bytes)."""
    return "0x" + keccak256(data).hex()


def check_msg_id(msg_id: str, chain_id: int, tx_hash: bytes | str, data: bytes) -> None:
    """Raise MessageIdMismatch unless `msg_id` is the transaction's id or the payload id.

    `chain_id` and `tx_hash` come from the verified (signed) message in `data`: a message
    stored under another transaction's id (junk, or an old signed message replayed to take
    that id) is refused instead of being processed as, or suppressing, that transaction.
    """
    if msg_id == payload_msg_id(data):
        return
    try:
        expected = transaction_msg_id(chain_id, tx_hash)
    except InvalidTransactionId:
        expected = ""
    if msg_id != expected:
        raise MessageIdMismatch(
            f"message id {msg_id[:80]!r} is not the id of the signed transaction {expected}"
        )


async def stored_message(conn: QueueConnection, seq: int) -> bytes | None:
    """The payload of the transaction stream's message `seq` (None when it is gone)."""
    try:
        raw = await conn.js.get_msg(conn.settings.stream, seq)
    except nats.js.errors.NotFoundError:
        return None
    except nats.js.errors.ServiceUnavailableError as err:
        raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
    except nats.js.errors.APIError as err:
        raise StreamConfigConflict(
            f"cannot read stored message {seq}: {err.description} ({err.err_code})"
        ) from err
    except TRANSIENT as err:
        raise QueueUnavailable(f"reading message {seq} failed: {type(err).__name__}") from err
    return bytes(raw.data or b"")


def tx_stream_config(settings: QueueSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.stream,
        description="Nox: one message per chain transaction with NoxCompute events",
        subjects=[settings.tx_subjects],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=settings.max_age,
        duplicate_window=settings.duplicate_window,
        max_msg_size=settings.max_msg_bytes,
        num_replicas=settings.replicas,
    )


def dlq_stream_config(settings: QueueSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.dlq_stream,
        description="Nox: parked (poison) transaction messages with their reason headers",
        subjects=[settings.dlq_subjects],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=settings.dlq_max_age,
        duplicate_window=min(settings.duplicate_window, settings.dlq_max_age),
        # A parked message carries the original payload plus its reason headers.
        max_msg_size=settings.max_msg_bytes + 64 * 1024,
        num_replicas=settings.replicas,
    )


async def ensure_streams(conn: QueueConnection) -> None:
    """Create the tx and dead-letter streams, or update them to the settings (idempotent).

    Raises StreamConfigConflict when an existing stream cannot be changed in place (its
    storage type, say), QueueUnavailable when JetStream cannot be reached.
    """
    for config in (tx_stream_config(conn.settings), dlq_stream_config(conn.settings)):
        await _create_or_update(conn, config)


async def _create_or_update(conn: QueueConnection, config: api.StreamConfig) -> None:
    try:
        try:
            await conn.js.add_stream(config)
        except nats.js.errors.BadRequestError as err:
            if err.err_code != _ERR_STREAM_NAME_IN_USE:
                raise
            await conn.js.update_stream(config)
    except nats.js.errors.ServiceUnavailableError as err:
        raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
    except nats.js.errors.APIError as err:
        raise StreamConfigConflict(
            f"stream {config.name} cannot be set up: {err.description} ({err.err_code})"
        ) from err
    except TRANSIENT as err:
        raise QueueUnavailable(f"JetStream unreachable: {type(err).__name__}") from err


async def publish_transaction(
    conn: QueueConnection,
    chain_id: int,
    tx_hash: bytes | str,
    data: bytes,
    *,
    headers: dict[str, str] | None = None,
    metrics: QueueMetrics | None = None,
    msg_id: str | None = None,
) -> PublishResult:
    """Publish one transaction message and wait for JetStream to store it.

    Returns whether it was a duplicate (same chain and tx already stored within the
    duplicate window: nothing new was stored). Raises QueueUnavailable while NATS is down (the
    caller keeps the message and retries; retrying is safe thanks to the message id) and
    QueueMessageTooLarge when `data` exceeds the stream's limit. `msg_id` replaces the
    transaction id (only `payload_msg_id(data)` is accepted by the orchestrators).
    """
    settings = conn.settings
    tx_id = transaction_msg_id(chain_id, tx_hash)
    msg_id = msg_id if msg_id is not None else tx_id
    if len(data) > settings.max_msg_bytes:
        raise QueueMessageTooLarge(
            f"transaction message of {len(data)} bytes exceeds {settings.max_msg_bytes}"
        )
    if not conn.connected:
        # Fail fast instead of letting nats-py queue the request for after the reconnect and
        # time out: the caller buffers it (see BufferedPublisher).
        raise QueueUnavailable("not connected to NATS")
    all_headers = dict(headers or {})
    all_headers.update(
        {
            HEADER_MSG_ID: msg_id,
            HEADER_CHAIN_ID: str(chain_id),
            HEADER_TX_HASH: normalize_tx_hash(tx_hash),
        }
    )
    try:
        ack = await conn.js.publish(
            settings.tx_subject(chain_id),
            data,
            timeout=settings.publish_timeout,
            stream=settings.stream,
            headers=all_headers,
        )
    except nats.js.errors.ServiceUnavailableError as err:
        raise QueueUnavailable(f"JetStream unavailable: {err.description}") from err
    except nats.js.errors.APIError as err:
        if err.err_code == _ERR_MESSAGE_TOO_LARGE:
            raise QueueMessageTooLarge(f"JetStream refused the message: {err.description}") from err
        # Anything else (a wrong expected stream, a bad subject) is a set-up mistake: retrying
        # would not help, so it is not reported as unavailability.
        raise StreamConfigConflict(
            f"JetStream refused the publish: {err.description} ({err.err_code})"
        ) from err
    except TRANSIENT as err:
        raise QueueUnavailable(f"publish failed: {type(err).__name__}") from err
    duplicate = bool(ack.duplicate)
    if metrics is not None:
        metrics.count_published(duplicate)
    return PublishResult(stream=ack.stream, seq=ack.seq, duplicate=duplicate, msg_id=msg_id)
