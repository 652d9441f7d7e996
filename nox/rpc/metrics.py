"""Prometheus metrics per gRPC server: an interceptor and the `/metrics` HTTP endpoint.

Every server owns its `CollectorRegistry` (no process-global default registry), so several
services in one process (the devnet, tests) never mix or collide. The metrics are:

- `nox_rpc_requests_total{service, method, code}`: finished RPCs by final status code;
- `nox_rpc_request_duration_seconds{service, method}`: handler latency histogram;
- `nox_rpc_in_flight{service, method}`: RPCs being handled now.

Requests gRPC rejects before a handler runs (over the size limit, unknown method) never reach
an interceptor and are not counted here.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from nox.rpc._handlers import ServerInterceptorBase, wrap_handler
from nox.rpc.exceptions import PortUnavailable


def split_method(method: str) -> tuple[str, str]:
    """`/pkg.v1.FooService/Bar` -> (`pkg.v1.FooService`, `Bar`)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name or "unknown"


class ServerMetrics:
    """The RPC metrics of one server, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "nox_rpc_requests",
            "Finished RPCs by method and final status code.",
            ("service", "method", "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "nox_rpc_request_duration_seconds",
            "Time from the handler's start to the RPC's end, by method.",
            ("service", "method"),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "nox_rpc_in_flight",
            "RPCs being handled now, by method.",
            ("service", "method"),
            registry=self.registry,
        )


def _final_code(context: Any, error: BaseException | None) -> str:
    if error is None or isinstance(error, grpc.aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK.name
    if isinstance(error, Exception):
        # Only reached when no error interceptor runs inside this one.
        return grpc.StatusCode.UNKNOWN.name
    return grpc.StatusCode.CANCELLED.name


class MetricsInterceptor(ServerInterceptorBase):
    """Counts, times and tracks in-flight RPCs; install it outside the error interceptor so
    it sees the final code. `clock` is injectable (monotonic seconds)."""

    def __init__(
        self, metrics: ServerMetrics, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._metrics = metrics
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        return wrap_handler(handler, functools.partial(self._observe, service, method))

    @asynccontextmanager
    async def _observe(self, service: str, method: str, context: Any) -> AsyncIterator[None]:
        in_flight = self._metrics.in_flight.labels(service, method)
        in_flight.inc()
        start = self._clock()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            in_flight.dec()
            self._metrics.latency.labels(service, method).observe(self._clock() - start)
            self._metrics.requests.labels(service, method, _final_code(context, error)).inc()


@dataclass
class MetricsEndpoint:
    """A running `/metrics` HTTP endpoint (prometheus_client's WSGI server in a thread)."""

    host: str
    port: int
    _server: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @classmethod
    def start(cls, registry: CollectorRegistry, *, host: str, port: int) -> MetricsEndpoint:
        """Serve `registry` on host:port (0 picks a free port; `.port` tells which)."""
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise PortUnavailable(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                metadata={"port": str(port)},
            ) from exc
        return cls(host=host, port=server.server_port, _server=server, _thread=thread)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def stop(self) -> None:
        """Stop serving and wait for the thread (off the event loop: shutdown blocks)."""
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
