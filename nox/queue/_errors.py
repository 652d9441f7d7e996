"""Which nats-py exceptions mean "NATS is not reachable right now" (retry later)."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors

# A request that timed out may still have been applied by the server (the reply was lost):
# callers retry, and message-id deduplication (publish) or at-least-once redelivery (acks)
# makes the retry safe.
TRANSIENT: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    ConnectionError,
)
