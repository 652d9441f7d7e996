"""Shared gRPC plumbing: server, typed errors both ways, health, reflection, logs, metrics."""

from __future__ import annotations

from nox.rpc.client import (
    ChannelSettings,
    call,
    class_for_reason,
    create_channel,
    error_info,
    raise_typed,
    register_error,
    typed_error,
    typed_error_interceptors,
)
from nox.rpc.error_interceptor import ErrorInterceptor, status_for
from nox.rpc.limits import RequestLimits
from nox.rpc.logging import SecretRedactor, configure_logging
from nox.rpc.metrics import MetricsEndpoint, MetricsInterceptor, ServerMetrics
from nox.rpc.server import RpcServer, ServerSettings, ServiceSpec, create_server

__all__ = [
    "ChannelSettings",
    "ErrorInterceptor",
    "MetricsEndpoint",
    "MetricsInterceptor",
    "RequestLimits",
    "RpcServer",
    "SecretRedactor",
    "ServerMetrics",
    "ServerSettings",
    "ServiceSpec",
    "call",
    "class_for_reason",
    "configure_logging",
    "create_channel",
    "create_server",
    "error_info",
    "raise_typed",
    "register_error",
    "status_for",
    "typed_error",
    "typed_error_interceptors",
]
