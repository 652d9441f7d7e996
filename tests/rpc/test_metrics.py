"""Prometheus metrics: counted per method and code, scraped over HTTP from the server."""

from __future__ import annotations

import asyncio

import grpc.aio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nox.rpc import ServerMetrics, ServerSettings
from nox.rpc.metrics import split_method

from .echo_service import ECHO_SERVICE, Served

pytestmark = pytest.mark.integration


@pytest.fixture
def server_settings() -> ServerSettings:
    return ServerSettings(metrics_port=0, graceful_shutdown_seconds=0)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(served: Served) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    endpoint = served.server.metrics_endpoint
    assert endpoint is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(endpoint.url)
    assert response.status_code == 200
    return samples(response.text)


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_metrics_endpoint_counts_calls_by_method_and_code(served: Served) -> None:
    stub = served.stub
    for _ in range(3):
        await stub.Echo(served.echo.request(b"ok"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Echo(served.echo.request(b"x", "NOX_ERROR"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Echo(served.echo.request(b"x", "UNEXPECTED"))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Echo(served.echo.request(b"x", "ABORT"))
    responses = [r async for r in stub.EchoStream(served.echo.request(b"s", count=2))]
    assert len(responses) == 2

    scraped = await scrape(served)
    echo = {"service": ECHO_SERVICE, "method": "Echo"}
    assert scraped[("nox_rpc_requests_total", labels(**echo, code="OK"))] == 3
    assert scraped[("nox_rpc_requests_total", labels(**echo, code="FAILED_PRECONDITION"))] == 1
    assert scraped[("nox_rpc_requests_total", labels(**echo, code="INTERNAL"))] == 1
    assert scraped[("nox_rpc_requests_total", labels(**echo, code="PERMISSION_DENIED"))] == 1
    stream = {"service": ECHO_SERVICE, "method": "EchoStream"}
    assert scraped[("nox_rpc_requests_total", labels(**stream, code="OK"))] == 1
    assert scraped[("nox_rpc_request_duration_seconds_count", labels(**echo))] == 6
    assert scraped[("nox_rpc_in_flight", labels(**echo))] == 0


async def test_in_flight_counts_an_open_stream(served: Served) -> None:
    async def requests() -> object:
        yield served.echo.request(b"1")
        await asyncio.Event().wait()  # keep the stream open until cancelled

    chat = served.stub.Chat(requests())
    assert (await chat.read()).payload == b"1"
    scraped = await scrape(served)
    assert scraped[("nox_rpc_in_flight", labels(service=ECHO_SERVICE, method="Chat"))] == 1
    chat.cancel()


def test_each_server_has_its_own_registry() -> None:
    first, second = ServerMetrics(), ServerMetrics()
    first.requests.labels("s", "m", "OK").inc()
    assert first.registry is not second.registry
    assert (
        second.registry.get_sample_value(
            "nox_rpc_requests_total", {"service": "s", "method": "m", "code": "OK"}
        )
        is None
    )


def test_split_method() -> None:
    assert split_method("/noxtest.v1.EchoService/Echo") == ("noxtest.v1.EchoService", "Echo")
    assert split_method("garbage") == ("unknown", "garbage")
