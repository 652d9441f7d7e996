"""A NATS connection that reconnects forever, with exponential backoff and jitter.

nats-py retries a server after a fixed `reconnect_time_wait`; its `reconnect_to_server_handler`
hook lets us choose the server and the delay instead, so the delay doubles per failed attempt
(from `reconnect_base_delay` up to `reconnect_max_delay`) with full jitter, and the attempts
never stop (`max_reconnect_attempts=-1`). Subscriptions are replayed by nats-py on reconnect
and JetStream keeps streams and durable consumers, so consumers resume by themselves.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client, Server
from nats.js import JetStreamContext

from nox.queue.config import QueueSettings
from nox.queue.exceptions import InvalidQueueSettings, QueueUnavailable
from nox.rpc.logging import module_logger

__all__ = ["QueueConnection", "auth_options", "backoff_delay", "connect"]

_log = module_logger("nox.queue")


def backoff_delay(
    attempts: int, settings: QueueSettings, rand: Callable[[], float] = random.random
) -> float:
    """The delay before reconnect attempt number `attempts` + 1 (full jitter, capped)."""
    ceiling = min(
        settings.reconnect_max_delay, settings.reconnect_base_delay * 2.0 ** min(attempts, 30)
    )
    return float(ceiling * (0.5 + 0.5 * rand()))


@dataclass
class QueueConnection:
    """A connected NATS client, its JetStream context and the settings it was made with."""

    nc: Client
    js: JetStreamContext
    settings: QueueSettings
    _reconnected: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    def on_reconnected(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call `callback` every time the connection is re-established."""
        self._reconnected.append(callback)

    async def close(self) -> None:
        """Close the connection (buffered publishes of nats-py are dropped, acks not sent)."""
        if not self.nc.is_closed:
            await self.nc.close()

    async def _fire_reconnected(self) -> None:
        for callback in list(self._reconnected):
            await callback()


def auth_options(settings: QueueSettings) -> dict[str, Any]:
    """nats-py `connect` keywords for the settings' credential, inbox prefix and TLS.

    Raises InvalidQueueSettings when no credential is configured and `dangerous_no_auth` is
    not set: a service never talks to NATS anonymously by accident.
    """
    if not settings.authenticated and not settings.dangerous_no_auth:
        raise InvalidQueueSettings(
            "NATS credentials are required (user and password, NKEY seed or creds file);"
            " dangerous_no_auth connects without them"
        )
    options: dict[str, Any] = {"inbox_prefix": settings.inbox_prefix}
    if settings.user is not None:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.nkeys_seed_file is not None:
        options["nkeys_seed"] = settings.nkeys_seed_file
    if settings.creds_file is not None:
        options["user_credentials"] = settings.creds_file
    if settings.tls_root_certificates is not None or settings.tls_cert_chain is not None:
        context = ssl.create_default_context(cafile=settings.tls_root_certificates)
        if settings.tls_cert_chain is not None:
            context.load_cert_chain(settings.tls_cert_chain, settings.tls_private_key)
        options["tls"] = context
    return options


async def connect(
    settings: QueueSettings,
    *,
    name: str | None = None,
    rand: Callable[[], float] = random.random,
) -> QueueConnection:
    """Connect to NATS; raises QueueUnavailable if no server answers now.

    Once connected, the client reconnects forever. The first connection is not retried here:
    the service decides (it reports itself not ready and tries again). A server that refuses
    the credentials is reported as QueueUnavailable too (its error names the refusal).
    """
    options = auth_options(settings)
    holder: list[QueueConnection] = []

    def choose(servers: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
        best = min(servers, key=lambda s: s.reconnects)
        return best, backoff_delay(best.reconnects, settings, rand)

    async def on_error(err: Exception) -> None:
        _log.debug("nats_error", error=type(err).__name__)

    async def on_disconnected() -> None:
        _log.warning("nats_disconnected")

    async def on_reconnected() -> None:
        _log.info("nats_reconnected")
        if holder:
            await holder[0]._fire_reconnected()

    try:
        # nats-py retries the first connection forever too (max_reconnect_attempts=-1), every
        # reconnect_time_wait seconds: bound it, so a service can report that NATS is down.
        connecting = nats.connect(
            servers=list(settings.servers),
            name=name or settings.connection_name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            connect_timeout=settings.connect_timeout,
            reconnect_time_wait=settings.reconnect_base_delay,
            reconnect_to_server_handler=choose,
            ping_interval=settings.ping_interval,
            max_outstanding_pings=settings.max_outstanding_pings,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            **options,
        )
        nc = await asyncio.wait_for(connecting, timeout=settings.initial_connect_timeout)
    except (OSError, TimeoutError, nats.errors.Error) as err:
        raise QueueUnavailable(f"cannot connect to NATS: {type(err).__name__}") from err
    conn = QueueConnection(
        nc=nc, js=nc.jetstream(timeout=settings.publish_timeout), settings=settings
    )
    holder.append(conn)
    return conn
