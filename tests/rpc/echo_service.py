"""The test-only echo service (tests/rpc/protos/noxtest/v1/echo.proto) and its servicer."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
import grpc.aio

from nox.errors import FailedPrecondition
from nox.rpc import RpcServer

ECHO_SERVICE = "noxtest.v1.EchoService"
SECRET_MESSAGE = "unexpected failure while holding key 5ec7e75ec7e7"


class EchoRefused(FailedPrecondition):
    """The test servicer's typed error."""

    reason = "ECHO_REFUSED"


@dataclass(frozen=True)
class Echo:
    """The generated echo modules."""

    pb2: ModuleType
    grpc: ModuleType

    def request(self, payload: bytes = b"ping", behaviour: str = "ECHO", count: int = 0) -> Any:
        return self.pb2.EchoRequest(
            payload=payload,
            behaviour=self.pb2.Behaviour.Value(f"BEHAVIOUR_{behaviour}"),
            count=count,
        )

    def stub(self, channel: grpc.aio.Channel) -> Any:
        return self.grpc.EchoServiceStub(channel)


class EchoServicer:
    """Answers as each request's `behaviour` says (see echo.proto)."""

    def __init__(self, echo: Echo, verify: Callable[[Any], Any] | None = None) -> None:
        """`verify(envelope)` checks a SignedEcho envelope and returns the verified request
        (normally a bound `nox.crypto.envelope.verify_envelope`)."""
        self._pb2 = echo.pb2
        self._verify = verify

    async def _behave(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        behaviour = self._pb2.Behaviour.Name(request.behaviour)
        if behaviour == "BEHAVIOUR_NOX_ERROR":
            raise EchoRefused(
                "echo refused by policy", metadata={"payload_length": str(len(request.payload))}
            )
        if behaviour == "BEHAVIOUR_UNEXPECTED":
            raise RuntimeError(SECRET_MESSAGE)
        if behaviour == "BEHAVIOUR_ABORT":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "aborted by the servicer")

    async def Echo(self, request: Any, context: Any) -> Any:
        await self._behave(request, context)
        return self._pb2.EchoResponse(payload=request.payload)

    async def SignedEcho(self, envelope: Any, context: Any) -> Any:
        if self._verify is None:
            raise FailedPrecondition("this echo server verifies no envelopes")
        verified = self._verify(envelope)
        return self._pb2.EchoResponse(payload=verified.message.payload)

    async def EchoStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for _ in range(request.count):
            yield self._pb2.EchoResponse(payload=request.payload)
        await self._behave(request, context)

    async def Collect(self, requests: AsyncIterator[Any], context: Any) -> Any:
        payloads = []
        last = None
        async for request in requests:
            payloads.append(request.payload)
            last = request
        if last is not None:
            await self._behave(last, context)
        return self._pb2.EchoResponse(payload=b"".join(payloads), received=len(payloads))

    async def Chat(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            await self._behave(request, context)
            yield self._pb2.EchoResponse(payload=request.payload)


@dataclass
class Served:
    """A running echo server, its log output, and channels to it."""

    server: RpcServer
    log: io.StringIO
    channel: grpc.aio.Channel  # raw: calls raise grpc.aio.AioRpcError
    typed_channel: grpc.aio.Channel  # calls raise typed NoxErrors
    echo: Echo

    @property
    def stub(self) -> Any:
        return self.echo.stub(self.channel)

    @property
    def typed_stub(self) -> Any:
        return self.echo.stub(self.typed_channel)
