"""Reflection serves the API's comments, so `grpcurl describe` documents every nox.v1 type."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from nox.rpc import ServerSettings, ServiceSpec, create_server
from nox.v1 import gateway_pb2_grpc

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


async def _grpcurl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL,
        "-plaintext",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.integration
async def test_grpcurl_describe_shows_service_and_message_comments() -> None:
    spec = ServiceSpec(
        name="nox.v1.GatewayService",
        add=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        servicer=gateway_pb2_grpc.GatewayServiceServicer(),
    )
    async with create_server([spec], settings=ServerSettings()) as server:
        service = await _grpcurl(server.target, "describe", "nox.v1.GatewayService")
        message = await _grpcurl(server.target, "describe", "nox.v1.EncryptInputRequest")
        health = await _grpcurl(server.target, "describe", "grpc.health.v1.Health")
    # Comments come from protos/nox/v1/gateway.proto through the committed descriptor set.
    assert "Inside its TEE the gateway sees plaintexts only in EncryptInput" in service
    assert "rpc EncryptInput" in service
    assert "//" in message  # every field of a public request is documented
    # Files outside nox/v1 still resolve through the default pool.
    assert "rpc Check" in health
