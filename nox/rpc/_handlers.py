"""Run every kind of grpc.aio method handler inside an async context manager (a "guard").

Both server interceptors (errors and metrics) need the same thing: code that runs around the
whole of one RPC, sees how it ended, and may replace an exception with an abort. grpc.aio hands
an interceptor an `RpcMethodHandler` whose behaviour is one of four shapes (unary or stream
request, and for stream responses either an async generator or a coroutine that calls
`context.write`); this module rebuilds the handler with the behaviour wrapped in the guard.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from nox.errors import InvalidArgument

# grpc-stubs declares the interceptor bases generic; at run time they are not subscriptable.
if TYPE_CHECKING:
    ServerInterceptorBase = grpc.aio.ServerInterceptor[Any, Any]
    UnaryUnaryClientBase = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    UnaryStreamClientBase = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    StreamUnaryClientBase = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    StreamStreamClientBase = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    ServerInterceptorBase = grpc.aio.ServerInterceptor
    UnaryUnaryClientBase = grpc.aio.UnaryUnaryClientInterceptor
    UnaryStreamClientBase = grpc.aio.UnaryStreamClientInterceptor
    StreamUnaryClientBase = grpc.aio.StreamUnaryClientInterceptor
    StreamStreamClientBase = grpc.aio.StreamStreamClientInterceptor

# A guard is entered once per RPC with the servicer context, and exited when the RPC's
# behaviour returns, raises, or (for streams) finishes yielding.
Guard = Callable[[Any], AbstractAsyncContextManager[None]]

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _behaviour(handler: Any) -> Any:
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary
    return handler.unary_stream if handler.response_streaming else handler.unary_unary


def _decode(deserialize: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return deserialize(data)
    except DecodeError:
        raise InvalidArgument(
            "request bytes do not decode as the method's request message"
        ) from None


async def _decoded_stream(deserialize: Callable[[bytes], Any], raw: Any) -> AsyncIterator[Any]:
    async for data in raw:
        yield _decode(deserialize, data)


def _decode_inside(behaviour: Any, deserialize: Callable[[bytes], Any], streaming: bool) -> Any:
    """`behaviour` taking raw request bytes and decoding them itself.

    gRPC would otherwise decode before any interceptor runs, and answer undecodable bytes
    with UNKNOWN and the parser's exception text; decoding inside the guard makes them a
    typed INVALID_ARGUMENT like any other malformed input.
    """

    def decoded(request: Any) -> Any:
        return _decoded_stream(deserialize, request) if streaming else _decode(deserialize, request)

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behaviour(decoded(request), context):
                yield response

        return stream

    async def unary(request: Any, context: Any) -> Any:
        return await behaviour(decoded(request), context)

    return unary


def _wrap_behaviour(behaviour: Any, guard: Guard) -> Any:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async with guard(context):
                async for response in behaviour(request, context):
                    yield response

        return stream

    if inspect.iscoroutinefunction(behaviour):

        async def unary(request: Any, context: Any) -> Any:
            async with guard(context):
                return await behaviour(request, context)

        return unary

    # A synchronous behaviour (grpc.aio runs it in an executor) cannot run inside an async
    # guard; nox's servicers are all async, so such a handler is passed through untouched.
    return behaviour


def wrap_handler(handler: Any, guard: Guard) -> Any:
    """The same method handler with its behaviour running inside `guard`."""
    if handler is None:
        return None
    behaviour = _behaviour(handler)
    if not (inspect.isasyncgenfunction(behaviour) or inspect.iscoroutinefunction(behaviour)):
        return handler
    if handler.request_deserializer is not None:
        # The innermost wrap takes over decoding; outer wraps then see raw bytes pass through.
        behaviour = _decode_inside(
            behaviour, handler.request_deserializer, bool(handler.request_streaming)
        )
    factory = _FACTORIES[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return factory(
        _wrap_behaviour(behaviour, guard),
        request_deserializer=None,
        response_serializer=handler.response_serializer,
    )
