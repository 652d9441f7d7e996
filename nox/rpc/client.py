"""Client side of the error contract: channels with nox's limits, and typed errors back.

The server interceptor sends a `google.rpc.Status` with one `ErrorInfo(reason, domain
"nox.v1")`. `raise_typed` turns the `AioRpcError` a call raises back into the `NoxError`
subclass the server raised: by reason (classes registered with `register_error`, or any
imported `NoxError` subclass that declares that reason itself), else by status code
(`nox.errors.error_class_for`). `create_channel` attaches an interceptor that does this for
every call, so `await stub.Method(request)` raises typed errors.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import grpc
import grpc.aio
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from nox.errors import DOMAIN, RETRYABLE_KEY, NoxError, error_class_for
from nox.rpc._handlers import (
    StreamStreamClientBase,
    StreamUnaryClientBase,
    UnaryStreamClientBase,
    UnaryUnaryClientBase,
)
from nox.rpc.exceptions import DuplicateErrorReason, InvalidServerSettings

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

T = TypeVar("T")
E = TypeVar("E", bound=type[NoxError])

# reason -> class. A static table of exception *classes* filled at import time by
# `register_error` (like an exception hierarchy itself), not runtime state.
_REASONS: dict[str, type[NoxError]] = {}


def register_error(cls: E) -> E:
    """Map `cls.reason` to `cls` for `raise_typed`; usable as a class decorator.

    Needed only when two imported classes declare the same reason or a class is not a
    direct declarer of its reason; registering the same class twice is harmless.
    """
    known = _REASONS.get(cls.reason)
    if known is not None and known is not cls:
        raise DuplicateErrorReason(
            f"reason {cls.reason} is registered to {known.__qualname__}",
            metadata={"reason": cls.reason},
        )
    _REASONS[cls.reason] = cls
    return cls


def _declarers(reason: str) -> list[type[NoxError]]:
    """Imported NoxError subclasses that set `reason` themselves (not by inheritance)."""
    found: list[type[NoxError]] = []
    pending: list[type[NoxError]] = [NoxError]
    seen: set[type[NoxError]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if vars(cls).get("reason") == reason:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def class_for_reason(reason: str) -> type[NoxError] | None:
    """The error class for a wire reason, or None when unknown or ambiguous."""
    registered = _REASONS.get(reason)
    if registered is not None:
        return registered
    declarers = _declarers(reason)
    return declarers[0] if len(declarers) == 1 else None


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The first `ErrorInfo` in the call's `google.rpc.Status`, if it carries one."""
    try:
        status = rpc_status.from_call(cast(grpc.Call, err))
    except ValueError:
        # The status trailer disagrees with the call's code or message: ignore it.
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def _build(cls: type[NoxError], message: str, reason: str, metadata: Mapping[str, str]) -> NoxError:
    try:
        error = cls(message, reason=reason, metadata=metadata)
    except TypeError:
        # A subclass with its own constructor signature: build it through the base's.
        error = cls.__new__(cls)
        NoxError.__init__(error, message, reason=reason, metadata=metadata)
    flag = metadata.get(RETRYABLE_KEY)
    if flag is not None:  # the server's instance overrode its class's `retryable`
        error.retryable = flag == "true"
    return error


def typed_error(err: grpc.aio.AioRpcError) -> NoxError:
    """The `NoxError` a failed call stands for (see the module docstring)."""
    code = err.code()
    message = err.details() or ""
    info = error_info(err)
    if info is not None and info.domain == DOMAIN:
        cls = class_for_reason(info.reason) or error_class_for(code)
        return _build(cls, message, info.reason, dict(info.metadata))
    cls = error_class_for(code)
    error = _build(cls, message, cls.reason if cls is not NoxError else code.name, {})
    if cls is NoxError:
        error.code = code
    return error


def raise_typed(err: grpc.aio.AioRpcError) -> NoReturn:
    """Raise the typed error for `err`, chained to it."""
    raise typed_error(err) from err


async def call(awaitable: Awaitable[T]) -> T:
    """Await one unary call on a plain channel, raising typed errors instead of AioRpcError."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as err:
        raise_typed(err)


async def _typed_stream(responses: AsyncIterable[T]) -> AsyncIterator[T]:
    try:
        async for response in responses:
            yield response
    except grpc.aio.AioRpcError as err:
        raise_typed(err)


# grpc.aio files a channel's interceptor under the first of the four kinds it is an instance
# of, so each kind needs its own class.
class _TypedUnaryUnary(UnaryUnaryClientBase):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await call(await continuation(client_call_details, request))


class _TypedCall:
    """A stream-unary call whose `await` raises typed errors; everything else is the call's.

    (grpc.aio lets a unary-unary interceptor return the response, but a stream-unary one
    must return a call object.)"""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from self._inner.__await__())
        except grpc.aio.AioRpcError as err:
            raise_typed(err)


class _TypedStreamUnary(StreamUnaryClientBase):
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return _TypedCall(await continuation(client_call_details, request_iterator))


class _TypedUnaryStream(UnaryStreamClientBase):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return _typed_stream(await continuation(client_call_details, request))


class _TypedStreamStream(StreamStreamClientBase):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return _typed_stream(await continuation(client_call_details, request_iterator))


def typed_error_interceptors() -> list[Any]:
    """Client interceptors (one per call kind) making every failed call raise its typed
    `NoxError`; pass them to `grpc.aio.*_channel(interceptors=...)`."""
    return [_TypedUnaryUnary(), _TypedUnaryStream(), _TypedStreamUnary(), _TypedStreamStream()]


@dataclass(frozen=True)
class ChannelSettings:
    """How a client connects: the same message limit as servers, optional TLS roots."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # PEM file of the CA roots to trust; None means a plaintext channel.
    tls_root_certificates: Path | None = None
    # Raise typed NoxErrors from calls (typed_error_interceptors) instead of AioRpcError.
    typed_errors: bool = True

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise InvalidServerSettings("max_message_bytes must be positive")


def message_size_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """The channel arguments that set both message limits explicitly."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def create_channel(target: str, settings: ChannelSettings | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to `target` ("host:port") with nox's limits and typed errors."""
    settings = settings if settings is not None else ChannelSettings()
    options = message_size_options(settings.max_message_bytes)
    interceptors = typed_error_interceptors() if settings.typed_errors else None
    if settings.tls_root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(settings.tls_root_certificates.read_bytes())
        return grpc.aio.secure_channel(
            target, credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
