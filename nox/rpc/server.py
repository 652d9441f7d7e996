"""The gRPC server every nox service runs on (DESIGN §9).

`create_server` builds a grpc.aio server with the project's conventions in one place:

- the services' servicers, plus gRPC health and server reflection for all of them, so
  `grpcurl` and `buf curl` work without proto files;
- the metrics interceptor (outermost, to see final codes) and the error interceptor;
- per-method request size limits checked on the raw bytes before parsing (`nox.rpc.limits`),
  and a receive limit of the transport equal to the largest of them (gRPC itself answers
  RESOURCE_EXHAUSTED beyond, from the frame header, before buffering); 16 MiB for a service
  that declares no limits, and a 16 MiB send limit; no HTTP/2 BDP probing, so the flow-control
  window of a stream does not grow to megabytes (see `create_server`);
- a bound port known before start (port 0 picks a free one), optional TLS and an optional
  Prometheus `/metrics` endpoint on its own port.

Health reflects real readiness: each service reports with `set_serving(name, bool)` (for
instance, not serving until attested and registered); the overall status ("") is SERVING
only while every service is.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from nox.rpc.client import DEFAULT_MAX_MESSAGE_BYTES
from nox.rpc.error_interceptor import ErrorInterceptor
from nox.rpc.exceptions import InvalidServerSettings, PortUnavailable, UnknownService
from nox.rpc.limits import LimitingServer, RequestLimits
from nox.rpc.metrics import MetricsEndpoint, MetricsInterceptor, ServerMetrics
from nox.rpc.ratls import TlsIdentity
from nox.rpc.reflection import enable_reflection

HEALTH_SERVICE = "grpc.health.v1.Health"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
OVERALL = ""  # the health service name that stands for the whole server


@dataclass(frozen=True)
class ServerSettings:
    """Where and how a service listens. The defaults suit a local, plaintext dev server."""

    host: str = "127.0.0.1"
    # 0 lets the OS pick a free port; `RpcServer.port` tells which.
    port: int = 0
    # Largest message received or sent; larger requests get RESOURCE_EXHAUSTED.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Port of the Prometheus `/metrics` endpoint (0 = a free port); None serves no endpoint.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # How long `stop()` lets in-flight RPCs finish before cancelling them.
    graceful_shutdown_seconds: float = 5.0
    # PEM certificate chain and private key; both or neither (plaintext).
    tls_cert_chain: Path | None = None
    tls_private_key: Path | None = None
    max_concurrent_rpcs: int | None = None
    # RA-TLS (nox.rpc.ratls): makes the in-memory certificate and key for the server's
    # `host:port` once the port is known, e.g. `partial(make_tls_identity, key, domain)`;
    # exclusive with the TLS files. The key is never written to disk.
    tls_identity: Callable[[str], TlsIdentity] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.tls_cert_chain is None) != (self.tls_private_key is None):
            raise InvalidServerSettings("TLS needs both a certificate chain and a private key")
        if self.tls_identity is not None and self.tls_cert_chain is not None:
            raise InvalidServerSettings("RA-TLS and TLS files are exclusive")
        if self.max_message_bytes <= 0:
            raise InvalidServerSettings("max_message_bytes must be positive")
        if not 0 <= self.port <= 65535:
            raise InvalidServerSettings("port must be in 0..65535")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise InvalidServerSettings("metrics_port must be in 0..65535")
        if self.graceful_shutdown_seconds < 0:
            raise InvalidServerSettings("graceful_shutdown_seconds must not be negative")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service to serve: its full name, the generated `add_..._to_server`, and the
    servicer instance. `serving` is its health status at start."""

    name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: object = field(repr=False)
    serving: bool = True
    request_limits: RequestLimits | None = None
    """Per-method request size limits; None leaves only the server's `max_message_bytes`."""


def _status(serving: bool) -> Any:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )


class RpcServer:
    """A configured grpc.aio server; built by `create_server`, usable as `async with`."""

    def __init__(
        self,
        server: grpc.aio.Server,
        *,
        port: int,
        settings: ServerSettings,
        services: Sequence[ServiceSpec],
        health: HealthServicer,
        metrics: ServerMetrics,
    ) -> None:
        self.grpc_server = server
        self.port = port
        self.settings = settings
        self.health = health
        self.metrics = metrics
        self.metrics_endpoint: MetricsEndpoint | None = None
        self._serving = {spec.name: spec.serving for spec in services}

    @property
    def target(self) -> str:
        """The `host:port` a client dials to reach this server."""
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Publish the initial health statuses, start serving and the metrics endpoint."""
        for name in self._serving:
            await self._publish(name)
        await self.grpc_server.start()
        started = False
        try:
            if self.settings.metrics_port is not None:
                self.metrics_endpoint = MetricsEndpoint.start(
                    self.metrics.registry,
                    host=self.settings.metrics_host,
                    port=self.settings.metrics_port,
                )
            started = True
        finally:
            if not started:  # e.g. the metrics port is taken: do not leave gRPC running
                await self.grpc_server.stop(0)

    async def set_serving(self, service: str, serving: bool) -> None:
        """Report a service's readiness; the overall status follows all services."""
        if service not in self._serving:
            raise UnknownService(f"not served here: {service}", metadata={"service": service})
        self._serving[service] = serving
        await self._publish(service)

    async def _publish(self, service: str) -> None:
        await self.health.set(service, _status(self._serving[service]))
        await self.health.set(OVERALL, _status(all(self._serving.values())))

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish for the grace period, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(
            self.settings.graceful_shutdown_seconds if grace is None else grace
        )
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.stop()
            self.metrics_endpoint = None

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()

    async def run_until_stopped(
        self, stop: asyncio.Event | None = None, *, signals: Sequence[int] = _STOP_SIGNALS
    ) -> None:
        """Start, serve until `stop` is set or one of `signals` arrives, then stop gracefully.

        This is what `noxctl serve ...` runs; tests pass an event and no signals.
        """
        stop = stop if stop is not None else asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
            await self.stop()

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _free_port(host: str) -> int:
    """A port free on `host` now: an RA-TLS certificate names its port before the bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _bind(server: grpc.aio.Server, settings: ServerSettings) -> int:
    try:
        if settings.tls_identity is not None:
            port = settings.port or _free_port(settings.host)
            host = f"[{settings.host}]" if ":" in settings.host else settings.host
            address = f"{host}:{port}"
            identity = settings.tls_identity(address)
            credentials = grpc.ssl_server_credentials(
                [(identity.private_key, identity.certificate)]
            )
            port = server.add_secure_port(address, credentials)
        elif settings.tls_cert_chain is not None and settings.tls_private_key is not None:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_private_key.read_bytes(), settings.tls_cert_chain.read_bytes())]
            )
            port = server.add_secure_port(settings.address, credentials)
        else:
            port = server.add_insecure_port(settings.address)
    except (RuntimeError, OSError) as exc:  # grpc's "Failed to bind to address ..."
        raise PortUnavailable(f"cannot bind {settings.address}") from exc
    if port == 0:  # older grpc returned 0 instead of raising
        raise PortUnavailable(f"cannot bind {settings.address}")
    return port


def receive_limit(services: Sequence[ServiceSpec], settings: ServerSettings) -> int:
    """The transport's receive cap: the largest method limit of the services served (health
    and reflection requests are tiny), never above `settings.max_message_bytes`."""
    if not services or any(spec.request_limits is None for spec in services):
        return settings.max_message_bytes
    largest = max(spec.request_limits.largest for spec in services if spec.request_limits)
    return min(settings.max_message_bytes, largest)


def create_server(
    services: Sequence[ServiceSpec],
    *,
    settings: ServerSettings,
    logger: Any | None = None,
) -> RpcServer:
    """Build (not start) a server for `services`; see the module docstring.

    Call it inside the event loop that will run the server.
    """
    names = [spec.name for spec in services]
    if len(set(names)) != len(names) or HEALTH_SERVICE in names:
        raise InvalidServerSettings("service names must be unique")
    metrics = ServerMetrics()
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(metrics), ErrorInterceptor(logger=logger)],
        options=[
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", receive_limit(services, settings)),
            ("grpc.so_reuseport", 0),
            # No BDP probing: the HTTP/2 flow-control window stays at its initial size rather
            # than growing to megabytes per stream, so the bytes of a request that is about to
            # be refused for its size are not buffered by the dozen MiB (bench/oversize.py).
            ("grpc.http2.bdp_probe", 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for spec in services:
        if spec.request_limits is None:
            spec.add(spec.servicer, server)
        else:
            # the generated add function only calls the two methods LimitingServer has
            limiting = cast(grpc.aio.Server, LimitingServer(server, spec.request_limits))
            spec.add(spec.servicer, limiting)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    enable_reflection((*names, HEALTH_SERVICE), server)
    port = _bind(server, settings)
    return RpcServer(
        server, port=port, settings=settings, services=services, health=health, metrics=metrics
    )
