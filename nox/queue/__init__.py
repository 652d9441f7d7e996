"""The JetStream layer the ingestor and the orchestrators share (see docs/queue.md).

- `config.QueueSettings`: subjects, stream and consumer names, limits and time-outs;
- `connection.connect`: a NATS client that reconnects forever with backoff;
- `stream`: idempotent stream set-up and deduplicated `publish_transaction`;
- `buffer.BufferedPublisher`: ordered publication that buffers while NATS is down;
- `consumer`: the shared durable pull consumer, leases, keep-alive, poison parking;
- `dlq`: the dead-letter format; `server.NatsServerProcess`: a local nats-server;
- `auth`: the NATS roles, their permissions and credential files.
"""

from __future__ import annotations

from nox.queue.buffer import BufferedPublisher, PendingTransaction
from nox.queue.config import QueueSettings
from nox.queue.connection import QueueConnection, connect
from nox.queue.consumer import Lease, TxConsumer, ensure_consumer, keep_alive
from nox.queue.dlq import (
    REASON_MAX_DELIVERIES,
    REASON_MSG_ID_MISMATCH,
    REASON_UNDECODABLE,
    ParkedMessage,
    park_message,
)
from nox.queue.exceptions import (
    ConsumerNotStarted,
    InvalidQueueSettings,
    InvalidTransactionId,
    LeaseSettled,
    MessageIdMismatch,
    NatsServerFailed,
    NatsServerNotFound,
    PublishBufferFull,
    QueueMessageTooLarge,
    QueueUnavailable,
    StreamConfigConflict,
)
from nox.queue.metrics import QueueMetrics
from nox.queue.server import NatsServerProcess, nats_server_binary
from nox.queue.stream import (
    PublishResult,
    check_msg_id,
    ensure_streams,
    normalize_tx_hash,
    payload_msg_id,
    publish_transaction,
    stored_message,
    transaction_msg_id,
)

__all__ = [
    "REASON_MAX_DELIVERIES",
    "REASON_MSG_ID_MISMATCH",
    "REASON_UNDECODABLE",
    "BufferedPublisher",
    "ConsumerNotStarted",
    "InvalidQueueSettings",
    "InvalidTransactionId",
    "Lease",
    "LeaseSettled",
    "MessageIdMismatch",
    "NatsServerFailed",
    "NatsServerNotFound",
    "NatsServerProcess",
    "ParkedMessage",
    "PendingTransaction",
    "PublishBufferFull",
    "PublishResult",
    "QueueConnection",
    "QueueMessageTooLarge",
    "QueueMetrics",
    "QueueSettings",
    "QueueUnavailable",
    "StreamConfigConflict",
    "TxConsumer",
    "check_msg_id",
    "connect",
    "ensure_consumer",
    "ensure_streams",
    "keep_alive",
    "nats_server_binary",
    "normalize_tx_hash",
    "park_message",
    "payload_msg_id",
    "publish_transaction",
    "stored_message",
    "transaction_msg_id",
]
