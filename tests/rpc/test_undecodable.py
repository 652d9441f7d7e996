"""Request bytes that do not decode are INVALID_ARGUMENT with an ErrorInfo, for every call shape.

gRPC decodes requests before interceptors run; nox.rpc takes decoding over so that corrupt
bytes are a typed error like any other malformed input (found by tests/fuzz).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from nox.rpc import error_info

from .echo_service import ECHO_SERVICE, Served

CORRUPT = b"\x00"  # field number 0 is never valid protobuf


async def _corrupt_stream() -> AsyncIterator[bytes]:
    yield CORRUPT


def _identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("Echo", "unary_unary"),
        ("EchoStream", "unary_stream"),
        ("Collect", "stream_unary"),
        ("Chat", "stream_stream"),
    ],
)
async def test_corrupt_request_bytes_get_invalid_argument(
    served: Served, method: str, kind: str
) -> None:
    callable_ = getattr(served.channel, kind)(
        f"/{ECHO_SERVICE}/{method}",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    request = _corrupt_stream() if kind.startswith("stream") else CORRUPT

    async def complete() -> None:
        call = callable_(request)
        if kind.endswith("stream"):
            async for _ in call:
                pass
        else:
            await call

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await complete()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.domain == "nox.v1"
    assert info.reason == "INVALID_ARGUMENT"
    assert "DecodeError" not in (caught.value.details() or "")
    # the server still serves a well-formed call afterwards
    ok = await served.stub.Echo(served.echo.pb2.EchoRequest(payload=b"still here"))
    assert ok.payload == b"still here"
