"""A tiny echo service served through nox.rpc, on a fresh server per test (port 0).

The echo service's Python code is generated once per test session from
tests/rpc/protos/noxtest/v1/echo.proto with grpc_tools.protoc into a temporary directory
(so no generated test code is committed and it can never be stale).

pytest-grpc 0.8 is not used here: it drives only synchronous servers (an async servicer fails
with "Failed to serialize response"), and nox's servers are grpc.aio; these fixtures play its
role for grpc.aio.
"""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from grpc_tools import protoc

from nox.rpc import ChannelSettings, ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.logging import SecretRedactor, bind_logger, build_processors

from .echo_service import ECHO_SERVICE, Echo, EchoServicer, Served

PROTO_ROOT = Path(__file__).resolve().parent / "protos"
# echo.proto imports nox/v1/envelope.proto, whose Python code is the committed nox.v1 package.
NOX_PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"


@pytest.fixture(scope="session")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Echo]:
    out = tmp_path_factory.mktemp("echo_gen")
    include = Path(protoc.__file__).resolve().parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{NOX_PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "noxtest/v1/echo.proto",
        ]
    )
    assert status == 0, "protoc failed on echo.proto"
    sys.path.insert(0, str(out))
    try:
        yield Echo(
            pb2=importlib.import_module("noxtest.v1.echo_pb2"),
            grpc=importlib.import_module("noxtest.v1.echo_pb2_grpc"),
        )
    finally:
        sys.path.remove(str(out))


@pytest.fixture
def server_settings() -> ServerSettings:
    return ServerSettings(graceful_shutdown_seconds=0)


@pytest.fixture
async def served(echo: Echo, server_settings: ServerSettings) -> AsyncIterator[Served]:
    log = io.StringIO()
    logger = bind_logger(build_processors(json=True, redactor=SecretRedactor()), log)
    server = create_server(
        [
            ServiceSpec(
                ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo)
            )
        ],
        settings=server_settings,
        logger=logger,
    )
    await server.start()
    channel = create_channel(server.target, ChannelSettings(typed_errors=False))
    typed_channel = create_channel(server.target)
    try:
        yield Served(server, log, channel, typed_channel, echo)
    finally:
        await channel.close()
        await typed_channel.close()
        await server.stop(grace=0)
