"""The server interceptor that turns exceptions into `google.rpc.Status` (DESIGN §9, AIP-193).

A `NoxError` becomes its canonical code, its (secret-free) message, and exactly one
`ErrorInfo(reason, domain="nox.v1", metadata)` in the `grpc-status-details-bin` trailer, so a
client rebuilds the typed error (`nox.rpc.client.raise_typed`). Anything else is a bug: the
client gets INTERNAL "internal error" with a correlation id, and the traceback goes to the log
under that id. This module holds the project's only `except Exception`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from nox.errors import DOMAIN, NoxError
from nox.rpc._handlers import ServerInterceptorBase, wrap_handler
from nox.rpc.logging import get_logger

INTERNAL_MESSAGE = "internal error"
INTERNAL_REASON = "INTERNAL"
CORRELATION_ID_KEY = "correlation_id"


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str]
) -> grpc.Status:
    """A `grpc.Status` carrying `google.rpc.Status` with one nox.v1 `ErrorInfo`."""
    detail = any_pb2.Any()
    # str() both sides: a non-str metadata value must not turn a typed error into a crash.
    fields = {str(key): str(value) for key, value in metadata.items()}
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=fields))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    result: grpc.Status = rpc_status.to_status(status)
    return result


def status_for(error: NoxError) -> grpc.Status:
    """The wire status of a typed error: its code, message, reason and metadata."""
    return rich_status(error.code, error.message, error.reason, error.metadata)


def internal_status(correlation_id: str) -> grpc.Status:
    """The wire status of an unexpected exception: nothing about it but a correlation id."""
    return rich_status(
        grpc.StatusCode.INTERNAL,
        f"{INTERNAL_MESSAGE} (correlation id {correlation_id})",
        INTERNAL_REASON,
        {CORRELATION_ID_KEY: correlation_id},
    )


async def _abort(context: Any, status: grpc.Status) -> None:
    await context.abort(status.code, status.details, status.trailing_metadata)


class ErrorInterceptor(ServerInterceptorBase):
    """Maps what a servicer raises to the status the client sees; see the module docstring.

    `new_correlation_id` is injectable so tests can pin it; the logger defaults to
    `nox.rpc.logging.get_logger("nox.rpc")`.
    """

    def __init__(
        self,
        *,
        logger: Any | None = None,
        new_correlation_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._log = logger if logger is not None else get_logger("nox.rpc")
        self._new_correlation_id = new_correlation_id

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        return wrap_handler(handler, functools.partial(self._guard, handler_call_details.method))

    @asynccontextmanager
    async def _guard(self, method: str, context: Any) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            # The servicer (or an inner interceptor) aborted with a status of its own.
            raise
        except NoxError as error:
            self._log.info(
                "rpc failed",
                method=method,
                code=error.code.name,
                reason=error.reason,
                error_message=error.message,
            )
            await _abort(context, status_for(error))
        except Exception:  # the one place in nox that catches every unexpected error
            correlation_id = self._new_correlation_id()
            self._log.exception(
                "unhandled exception in rpc", method=method, correlation_id=correlation_id
            )
            await _abort(context, internal_status(correlation_id))
