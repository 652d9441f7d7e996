"""The error contract over a real grpc.aio server: typed errors out, typed errors back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from nox.errors import DOMAIN, NoxError, PermissionDenied, ResourceExhausted, Unavailable
from nox.rpc import call, class_for_reason, client, error_info, raise_typed, register_error
from nox.rpc.exceptions import DuplicateErrorReason

from .echo_service import EchoRefused, Served

pytestmark = pytest.mark.integration


def error_infos(err: grpc.aio.AioRpcError) -> list[Any]:
    """Every ErrorInfo in the call's google.rpc.Status."""
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    infos = []
    for detail in status.details:
        assert detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR), detail.type_url
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        infos.append(info)
    return infos


async def requests(served: Served, *behaviours: str) -> AsyncIterator[Any]:
    for behaviour in behaviours:
        yield served.echo.request(b"abc", behaviour)


async def drain(stream: Any) -> list[bytes]:
    return [response.payload async for response in stream]


async def invoke(stub: Any, served: Served, kind: str, behaviour: str) -> Any:
    """Call the echo method of `kind`, making it end with `behaviour`."""
    if kind == "unary_unary":
        return await stub.Echo(served.echo.request(b"abc", behaviour))
    if kind == "unary_stream":
        return await drain(stub.EchoStream(served.echo.request(b"abc", behaviour, count=2)))
    if kind == "stream_unary":
        return await stub.Collect(requests(served, "ECHO", behaviour))
    return await drain(stub.Chat(requests(served, "ECHO", behaviour)))


async def fail(served: Served, kind: str, behaviour: str) -> grpc.aio.AioRpcError:
    """The raw error of a call made to fail with `behaviour`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await invoke(served.stub, served, kind, behaviour)
    return caught.value


async def assert_still_serving(served: Served) -> None:
    response = await served.stub.Echo(served.echo.request(b"still here"))
    assert response.payload == b"still here"


KINDS = ["unary_unary", "unary_stream", "stream_unary", "stream_stream"]


@pytest.mark.parametrize("kind", KINDS)
async def test_nox_error_becomes_status_with_one_error_info(served: Served, kind: str) -> None:
    err = await fail(served, kind, "NOX_ERROR")
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "echo refused by policy"
    infos = error_infos(err)
    assert len(infos) == 1
    assert infos[0].reason == "ECHO_REFUSED"
    assert infos[0].domain == DOMAIN == "nox.v1"
    assert dict(infos[0].metadata) == {"payload_length": "3"}
    await assert_still_serving(served)


@pytest.mark.parametrize("kind", KINDS)
async def test_unexpected_exception_is_internal_without_its_message(
    served: Served, kind: str
) -> None:
    err = await fail(served, kind, "UNEXPECTED")
    assert err.code() == grpc.StatusCode.INTERNAL
    details = err.details() or ""
    assert details.startswith("internal error (correlation id ")
    assert "5ec7e7" not in details
    assert "RuntimeError" not in details
    infos = error_infos(err)
    assert len(infos) == 1
    assert infos[0].reason == "INTERNAL"
    correlation_id = infos[0].metadata["correlation_id"]
    assert correlation_id in details
    # Nothing in any trailer carries the exception's message either.
    assert all(
        b"5ec7e7" not in (value if isinstance(value, bytes) else value.encode())
        for _, value in err.trailing_metadata() or ()
    )
    # The traceback is in the server's log under the same correlation id.
    events = [json.loads(line) for line in served.log.getvalue().splitlines()]
    logged = [e for e in events if e.get("correlation_id") == correlation_id]
    assert len(logged) == 1
    assert logged[0]["event"] == "unhandled exception in rpc"
    assert logged[0]["exception"][0]["exc_type"] == "RuntimeError"
    await assert_still_serving(served)


async def test_servicer_abort_passes_through_unchanged(served: Served) -> None:
    err = await fail(served, "unary_unary", "ABORT")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "aborted by the servicer"
    assert error_info(err) is None
    await assert_still_serving(served)


async def test_raise_typed_rebuilds_the_registered_class(served: Served) -> None:
    err = await fail(served, "unary_unary", "NOX_ERROR")
    with pytest.raises(EchoRefused) as caught:
        raise_typed(err)
    assert caught.value.reason == "ECHO_REFUSED"
    assert caught.value.message == "echo refused by policy"
    assert caught.value.metadata == {"payload_length": "3"}
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.__cause__ is err


@pytest.mark.parametrize("kind", KINDS)
async def test_typed_channel_raises_typed_errors_for_every_kind(served: Served, kind: str) -> None:
    stub = served.typed_stub
    with pytest.raises(EchoRefused) as refused:
        await invoke(stub, served, kind, "NOX_ERROR")
    assert refused.value.metadata == {"payload_length": "3"}
    with pytest.raises(NoxError) as caught:
        await invoke(stub, served, kind, "UNEXPECTED")
    assert type(caught.value) is NoxError
    assert caught.value.code == grpc.StatusCode.INTERNAL
    with pytest.raises(PermissionDenied):
        await invoke(stub, served, kind, "ABORT")
    assert await invoke(stub, served, kind, "ECHO")


async def test_typed_stream_delivers_responses_before_the_error(served: Served) -> None:
    received: list[bytes] = []

    async def consume() -> None:
        async for response in served.typed_stub.EchoStream(
            served.echo.request(b"s", "NOX_ERROR", count=2)
        ):
            received.append(response.payload)

    with pytest.raises(EchoRefused):
        await consume()
    assert received == [b"s", b"s"]


async def test_call_helper_raises_typed_errors(served: Served) -> None:
    with pytest.raises(EchoRefused):
        await call(served.stub.Echo(served.echo.request(b"abc", "NOX_ERROR")))
    assert (await call(served.stub.Echo(served.echo.request(b"ok")))).payload == b"ok"


async def test_unknown_reason_falls_back_to_the_code_and_keeps_the_reason() -> None:
    status = rpc_status.to_status(
        rpc_status.status_pb2.Status(
            code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
            message="too many",
            details=[_packed_info("SOME_FUTURE_REASON")],
        )
    )
    err = grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), "too many"
    )
    with pytest.raises(ResourceExhausted) as caught:
        raise_typed(err)
    assert caught.value.reason == "SOME_FUTURE_REASON"


async def test_plain_grpc_errors_map_by_code() -> None:
    err = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "connect failed"
    )
    with pytest.raises(Unavailable):
        raise_typed(err)
    cancelled = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "cancelled"
    )
    with pytest.raises(NoxError) as caught:
        raise_typed(cancelled)
    assert type(caught.value) is NoxError
    assert caught.value.code == grpc.StatusCode.CANCELLED
    assert caught.value.reason == "CANCELLED"


def test_registry_resolves_ambiguous_reasons_and_refuses_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "_REASONS", {})  # leave the real table untouched

    class FirstClash(NoxError):
        """Test class."""

        reason = "CLASH_FOR_REGISTRY_TEST"

    class SecondClash(NoxError):
        """Test class."""

        reason = "CLASH_FOR_REGISTRY_TEST"

    # Two imported classes declare the reason: unknown until one is registered.
    assert class_for_reason("CLASH_FOR_REGISTRY_TEST") is None
    assert register_error(FirstClash) is FirstClash
    assert register_error(FirstClash) is FirstClash
    assert class_for_reason("CLASH_FOR_REGISTRY_TEST") is FirstClash
    with pytest.raises(DuplicateErrorReason):
        register_error(SecondClash)


def test_class_with_its_own_constructor_is_rebuilt() -> None:
    class Custom(NoxError):
        """Test class with a constructor of its own."""

        reason = "CUSTOM_CONSTRUCTOR_TEST"

        def __init__(self, count: int) -> None:
            super().__init__(f"{count} things")

    status = rpc_status.to_status(
        rpc_status.status_pb2.Status(
            code=grpc.StatusCode.INTERNAL.value[0],
            message="3 things",
            details=[_packed_info("CUSTOM_CONSTRUCTOR_TEST")],
        )
    )
    err = grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), "3 things"
    )
    with pytest.raises(Custom) as caught:
        raise_typed(err)
    assert caught.value.message == "3 things"


def _packed_info(reason: str) -> Any:
    from google.protobuf import any_pb2

    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    return packed
