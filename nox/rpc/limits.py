"""Per-method request size limits, checked on the raw bytes before anything parses them.

A request is refused by its size alone, in two layers:

1. the transport: grpc C-core reads a message's declared length from its frame header and
   refuses one above the server's `max_receive_message_length` before buffering it. A server
   sets that cap to the largest limit of ITS methods (`RequestLimits.largest` over its
   services), not a blanket 16 MiB, so a request above every limit never reaches Python;
2. the method: each method's deserializer is wrapped (`limit_handlers`) so that a request
   above that method's own limit is refused with RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE
   before `FromString` runs: a public method's limit is far below a signed method's.

Both layers cost no parsing, so a flood of oversized requests costs the transport buffers of
requests below the server's cap only (see `bench/oversize.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from nox.rpc.exceptions import InvalidServerSettings, RequestTooLarge

# grpc-stubs declares GenericRpcHandler generic; at run time it is not subscriptable.
if TYPE_CHECKING:
    GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    GenericHandler = grpc.GenericRpcHandler


@dataclass(frozen=True)
class RequestLimits:
    """The largest request, in serialized bytes, that each method of one service accepts.

    `methods` maps a method's short name (e.g. "EncryptInput") to its limit; methods not
    named get `default`.
    """

    default: int
    methods: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min([self.default, *self.methods.values()]) < 1:
            raise InvalidServerSettings("request size limits must be positive")

    def for_method(self, method: str) -> int:
        """The limit of `method` (its short name)."""
        return self.methods.get(method, self.default)

    @property
    def largest(self) -> int:
        """The largest limit of any method: the transport cap this service needs."""
        return max([self.default, *self.methods.values()])


def size_checked(
    deserialize: Callable[[bytes], Any], limit: int, method: str
) -> Callable[[bytes], Any]:
    """`deserialize`, refusing bytes longer than `limit` before parsing them."""

    def checked(data: bytes) -> Any:
        size = len(data)
        if size > limit:
            raise RequestTooLarge(
                f"{method} request is {size} bytes, limit {limit}",
                metadata={"limit": str(limit), "method": method},
            )
        return deserialize(data)

    return checked


def _limited(handler: Any, limits: RequestLimits, method: str) -> Any:
    if handler is None or handler.request_deserializer is None:
        return handler
    # grpc's method handlers are namedtuples: replace the deserializer only.
    return handler._replace(
        request_deserializer=size_checked(
            handler.request_deserializer, limits.for_method(method), method
        )
    )


class _LimitedGenericHandler(GenericHandler):
    """A generic handler whose method handlers check request sizes (see `limit_handlers`)."""

    def __init__(self, inner: GenericHandler, limits: RequestLimits) -> None:
        self._inner = inner
        self._limits = limits

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = self._inner.service(handler_call_details)
        method = str(handler_call_details.method).rpartition("/")[2]
        return _limited(handler, self._limits, method)


class LimitingServer:
    """Stands for a grpc.aio server in a generated `add_XServicer_to_server(servicer, server)`
    call, so that every method handler it registers checks its request size first."""

    def __init__(self, server: Any, limits: RequestLimits) -> None:
        self._server = server
        self._limits = limits

    def add_generic_rpc_handlers(self, handlers: Sequence[GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_LimitedGenericHandler(h, self._limits) for h in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: _limited(h, self._limits, name) for name, h in handlers.items()}
        )
