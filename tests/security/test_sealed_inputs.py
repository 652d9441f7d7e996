"""Issue 14, point 3: an input's plaintext never crosses the wire; attacks on the way in.

The attacker sits on the network between the SDK and the gateway (a TCP relay on loopback
that records every byte), speaks raw gRPC to the gateway, replays a captured sealed input
under another owner, application or type, or answers GetGatewayInfo itself (a man in the
middle with its own key). The gateway, the KMS nodes and the store are the real ones
(tests/sdk/sdk_support.py); the registry is a dictionary behind the same interface.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from sdk_support import Net, running_network

from nox.crypto.keys import EnclaveKey
from nox.crypto.sealing import sealed_input_request
from nox.errors import NoxError
from nox.handles import fixed_bytes, uint
from nox.rpc import ServiceSpec, create_channel, create_server
from nox.rpc.client import ChannelSettings, error_info
from nox.rpc.server import ServerSettings
from nox.sdk import GatewayKeyInvalid, NoxClient
from nox.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.integration

SECRET = bytes.fromhex("5ea1ed0f" * 8)  # a distinctive 32-byte value
APP = os.urandom(20)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with running_network(tmp_path) as network:
        yield network


def stored_rows(tmp_path: Path) -> int:
    """Handles in the gateway's real store (its SQLite file), read as the operator would."""
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM gateway_handles").fetchone()
    return int(count)


@asynccontextmanager
async def wire_tap(target: str) -> AsyncIterator[tuple[str, bytearray]]:
    """A TCP relay on loopback in front of `target` that records every byte, both ways."""
    host, port = target.rsplit(":", 1)
    captured = bytearray()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                captured.extend(chunk)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
    relay_port = relay_server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{relay_port}", captured
    finally:
        relay_server.close()


async def test_the_wire_between_sdk_and_gateway_never_carries_the_plaintext(
    net: Net, tmp_path: Path
) -> None:
    user = EnclaveKey.generate()
    async with (
        wire_tap(net.gateway_target) as (tapped, captured),
        NoxClient(tapped, directory=net.registry, kms_public=net.dealing.public) as nox,
    ):
        encrypted = await nox.encrypt_input(
            SECRET, fixed_bytes(32), owner=user.address, application=APP
        )
        number = await nox.encrypt_input(
            int.from_bytes(SECRET, "big"), uint(256), owner=user.address, application=APP
        )
    # The tap saw the calls (the handles went back through it) but never the value.
    assert encrypted.handle in captured
    assert number.handle in captured
    assert SECRET not in captured
    assert SECRET.hex().encode() not in captured
    # Nothing lost: the stored values decrypt to what was sent.
    net.acl.viewers.update({(encrypted.handle, user.address), (number.handle, user.address)})
    async with NoxClient(net.gateway_target, kms_public=net.dealing.public) as nox:
        values = await nox.decrypt([encrypted.handle, number.handle], user_key=user)
    assert values == {encrypted.handle: SECRET, number.handle: int.from_bytes(SECRET, "big")}
    assert stored_rows(tmp_path) == 2


async def raw_encrypt(
    target: str, request: gateway_pb2.EncryptInputRequest
) -> grpc.aio.AioRpcError:
    """Send `request` as raw gRPC (no SDK, no typed errors) and return the error it got."""
    channel = create_channel(target, ChannelSettings(typed_errors=False))
    try:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.EncryptInput(request)
        return refused.value
    finally:
        await channel.close(None)


async def test_a_plaintext_input_is_refused_by_a_default_gateway(net: Net, tmp_path: Path) -> None:
    request = gateway_pb2.EncryptInputRequest(
        chain_id=31337,
        type_code=fixed_bytes(32).code,
        plaintext=SECRET,
        owner_address=os.urandom(20),
        application_address=APP,
    )
    error = await raw_encrypt(net.gateway_target, request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(error)
    assert info is not None
    assert info.reason == "PLAINTEXT_INPUT_REFUSED"
    assert SECRET.hex() not in (error.details() or "")
    assert stored_rows(tmp_path) == 0


@pytest.mark.parametrize("retarget", ["owner", "application", "type"])
async def test_a_captured_sealed_input_cannot_be_retargeted(
    net: Net, tmp_path: Path, retarget: str
) -> None:
    async with NoxClient(net.gateway_target, directory=net.registry) as nox:
        info = await nox.info()
    owner = os.urandom(20)
    captured = sealed_input_request(
        info.enclave_public_key,
        SECRET,
        chain_id=info.chain_id,
        type_code=uint(256).code,
        owner=owner,
        application=APP,
    )
    forged = gateway_pb2.EncryptInputRequest()
    forged.CopyFrom(captured)
    if retarget == "owner":
        forged.owner_address = os.urandom(20)  # Mallory claims Alice's value as hers
    elif retarget == "application":
        forged.application_address = os.urandom(20)  # another contract
    else:
        forged.type_code = fixed_bytes(32).code  # same size, another type
    error = await raw_encrypt(net.gateway_target, forged)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_info(error)
    assert details is not None
    assert details.reason == "SEALED_INPUT_INVALID"
    assert stored_rows(tmp_path) == 0
    # The untouched capture is accepted: the refusal is the binding, not a broken seal.
    channel = create_channel(net.gateway_target)
    try:
        answer = await gateway_pb2_grpc.GatewayServiceStub(channel).EncryptInput(captured)
    finally:
        await channel.close(None)
    assert len(answer.handle) == 32
    assert stored_rows(tmp_path) == 1


class ManInTheMiddle(gateway_pb2_grpc.GatewayServiceServicer):
    """Answers GetGatewayInfo with the real gateway's info but its own key (and optionally
    its own address); records every input it is sent."""

    def __init__(self, real: gateway_pb2.GetGatewayInfoResponse, own_address: bool) -> None:
        self.key = EnclaveKey.generate()
        self.info = gateway_pb2.GetGatewayInfoResponse()
        self.info.CopyFrom(real)
        self.info.enclave_public_key = self.key.public_key
        if own_address:
            self.info.node.enclave_address = self.key.address
        self.inputs: list[gateway_pb2.EncryptInputRequest] = []

    async def GetGatewayInfo(
        self, request: gateway_pb2.GetGatewayInfoRequest, context: object
    ) -> gateway_pb2.GetGatewayInfoResponse:
        return self.info

    async def EncryptInput(
        self, request: gateway_pb2.EncryptInputRequest, context: object
    ) -> gateway_pb2.EncryptInputResponse:
        self.inputs.append(request)
        return gateway_pb2.EncryptInputResponse()


@pytest.mark.parametrize(
    ("own_address", "error", "reason"),
    [
        (True, NoxError, "SIGNER_NOT_REGISTERED"),  # its own, unregistered address
        (False, GatewayKeyInvalid, "PERMISSION_DENIED"),  # the gateway's address, its key
    ],
)
async def test_the_sdk_refuses_a_man_in_the_middle_with_its_own_key(
    net: Net, own_address: bool, error: type[NoxError], reason: str
) -> None:
    channel = create_channel(net.gateway_target)
    try:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        real = await stub.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
    finally:
        await channel.close(None)
    mitm = ManInTheMiddle(real, own_address)
    spec = ServiceSpec(
        "nox.v1.GatewayService", gateway_pb2_grpc.add_GatewayServiceServicer_to_server, mitm
    )
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    try:
        async with NoxClient(server.target, directory=net.registry) as nox:
            with pytest.raises(error) as refused:
                await nox.encrypt_input(
                    SECRET, fixed_bytes(32), owner=os.urandom(20), application=APP
                )
    finally:
        await server.stop(0)
    assert refused.value.reason == reason
    assert mitm.inputs == []  # nothing was sent to it, sealed or not
