"""RA-TLS on the service channels: each client kind dials its peers through
`nox.rpc.ratls.dial` when its `*_ATTESTED_TLS` setting is on, so a peer whose certificate is
not bound to an active enclave of the expected role is refused before any request byte.

Gateway -> KMS (`NOX_GATEWAY_KMS_ATTESTED_TLS`): the real `connect_kms` and `KmsLink`
against impostor TLS servers (tests/security/test_ratls.py's, which record every byte sent
after the handshake) and against a real RA-TLS gRPC server; a restarted node (new enclave
key, new certificate) is dialled and verified again before its new address is used.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import test_ratls
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_ratls import DOMAIN, NOW, Impostor, StartImpostor

from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.gateway.config import GatewaySettings
from nox.gateway.server import KmsLink, connect_kms, server_settings
from nox.kms.server import StaticDirectory
from nox.orchestrator.cli import OrchestratorServiceSettings
from nox.rpc import RpcServer, ServerSettings, ServiceSpec, create_server
from nox.rpc.client import ChannelSettings
from nox.rpc.exceptions import TlsBindingInvalid
from nox.rpc.peers import PeerChannel, is_unavailable, open_peer
from nox.rpc.ratls import (
    AttestedDialer,
    attested_channel,
    attested_identity,
    make_tls_identity,
    verify_certificate,
)
from nox.runner.config import RunnerSettings
from nox.sdk import ClientSettings, NoxClient
from nox.v1 import common_pb2, kms_pb2, kms_pb2_grpc

KMS, GATEWAY = common_pb2.ROLE_KMS, common_pb2.ROLE_GATEWAY

pytestmark = pytest.mark.integration

impostor = test_ratls.impostor  # the attack suite's recording TLS servers


class _Keys:
    def __init__(self) -> None:
        self.kms = EnclaveKey.generate()
        self.restarted_kms = EnclaveKey.generate()
        self.gateway = EnclaveKey.generate()
        self.directory = StaticDirectory(
            {self.kms.address: KMS, self.restarted_kms.address: KMS, self.gateway.address: GATEWAY}
        )

    def dialer(self) -> AttestedDialer:
        return AttestedDialer(self.directory, DOMAIN, lambda: NOW)


@pytest.fixture
def keys() -> _Keys:
    return _Keys()


def _gateway_settings(target: str) -> GatewaySettings:
    return GatewaySettings(kms_endpoints=(target,), kms_attested_tls=True, kms_timeout_seconds=5)


async def _gateway_connects(keys: _Keys, target: str) -> None:
    await connect_kms(
        (target,),
        key=keys.gateway,
        domain=DOMAIN,
        directory=keys.directory,
        registry_keys=(b"", (), 1),
        settings=_gateway_settings(target),
        now=NOW,
    )


async def _nothing_sent(seen: Impostor) -> None:
    await asyncio.wait_for(seen.done.wait(), 10)
    assert seen.handshakes == [1]  # the gateway did reach the impostor ...
    assert seen.received == []  # ... and sent it no request byte


async def test_the_gateway_refuses_a_kms_node_with_an_unregistered_key(
    keys: _Keys, impostor: StartImpostor
) -> None:
    stranger = EnclaveKey.generate()
    seen = await impostor(functools.partial(make_tls_identity, stranger, DOMAIN, now=NOW))
    with pytest.raises(TlsBindingInvalid) as caught:
        await _gateway_connects(keys, seen.target)
    assert caught.value.metadata["check"] == "directory"
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    await _nothing_sent(seen)


async def test_the_gateway_refuses_a_kms_endpoint_bound_to_another_role(
    keys: _Keys, impostor: StartImpostor
) -> None:
    """A compromised gateway's real enclave key, registered, but not as a KMS node."""
    seen = await impostor(functools.partial(make_tls_identity, keys.gateway, DOMAIN, now=NOW))
    with pytest.raises(TlsBindingInvalid) as caught:
        await _gateway_connects(keys, seen.target)
    assert caught.value.metadata["check"] == "directory"
    await _nothing_sent(seen)


# --- a real KMS endpoint, restarted --------------------------------------------------------


class _PublicKey(kms_pb2_grpc.KmsServiceServicer):
    """Only GetPublicKey, naming `key` as the node."""

    def __init__(self, key: EnclaveKey) -> None:
        self.key = key

    async def GetPublicKey(
        self, request: kms_pb2.GetPublicKeyRequest, context: object
    ) -> kms_pb2.GetPublicKeyResponse:
        return kms_pb2.GetPublicKeyResponse(
            node=common_pb2.NodeInfo(enclave_address=self.key.address), node_index=1
        )


async def _kms_server(key: EnclaveKey, port: int = 0) -> RpcServer:
    spec = ServiceSpec(
        name="nox.v1.KmsService",
        add=kms_pb2_grpc.add_KmsServiceServicer_to_server,
        servicer=_PublicKey(key),  # type: ignore[abstract]  # (Delegate: not served)
    )
    server = create_server(
        [spec],
        settings=ServerSettings(
            port=port,
            graceful_shutdown_seconds=0,
            tls_identity=functools.partial(make_tls_identity, key, DOMAIN, now=NOW),
        ),
    )
    await server.start()
    return server


@pytest.fixture
async def servers() -> AsyncIterator[list[RpcServer]]:
    started: list[RpcServer] = []
    yield started
    for server in started:
        await server.stop(0)


async def test_a_restarted_kms_node_is_verified_again_before_it_is_used(
    keys: _Keys, servers: list[RpcServer]
) -> None:
    first = await _kms_server(keys.kms)
    servers.append(first)
    link = await KmsLink.open(first.target, ChannelSettings(), keys.dialer(), 5.0)
    assert await link.rediscover() == keys.kms.address
    port = int(first.target.rpartition(":")[2])
    await first.stop(0)
    # the node comes back with a new, registered key: dialled again, pinned to the new cert
    second = await _kms_server(keys.restarted_kms, port)
    servers.append(second)
    assert await link.rediscover() == keys.restarted_kms.address
    await second.stop(0)


async def test_an_impostor_in_place_of_a_restarted_kms_node_is_refused(
    keys: _Keys, servers: list[RpcServer], impostor: StartImpostor
) -> None:
    first = await _kms_server(keys.kms)
    servers.append(first)
    link = await KmsLink.open(first.target, ChannelSettings(), keys.dialer(), 5.0)
    port = int(first.target.rpartition(":")[2])
    await first.stop(0)
    stranger = EnclaveKey.generate()
    seen = await impostor(functools.partial(make_tls_identity, stranger, DOMAIN, now=NOW), port)
    with pytest.raises(TlsBindingInvalid) as caught:
        await link.rediscover()
    assert caught.value.metadata["check"] == "directory"
    await _nothing_sent(seen)


async def test_the_gateway_serves_a_certificate_bound_to_its_advertised_endpoint(
    keys: _Keys,
) -> None:
    settings = GatewaySettings(attested_tls=True, endpoint="", port=0)
    server = create_server(
        [], settings=server_settings(settings, attested_identity(keys.gateway, DOMAIN))
    )
    await server.start()
    try:
        channel, peer = await attested_channel(
            server.target,
            keys.directory,
            GATEWAY,
            domain=DOMAIN,
            now=int(time.time()),  # attested_identity dates its certificate now, not at NOW
            expected_address=keys.gateway.address,
        )
        await channel.close(None)
    finally:
        await server.stop(0)
    assert peer.endpoint == server.target


def test_the_gateway_binds_its_advertised_endpoint(keys: _Keys) -> None:
    make = attested_identity(keys.gateway, DOMAIN, "gateway.example:443")
    identity = make("127.0.0.1:50051")
    der = x509.load_pem_x509_certificate(identity.certificate).public_bytes(
        serialization.Encoding.DER
    )
    peer = verify_certificate(
        der,
        endpoint="gateway.example:443",
        domain=DOMAIN,
        directory=keys.directory,
        role=GATEWAY,
        now=int(time.time()),  # attested_identity dates its certificate now, not at NOW
    )
    assert peer.address == keys.gateway.address


# --- runner -> orchestrator / gateway, orchestrator -> gateway: nox.rpc.peers ----------------

ORCHESTRATOR = common_pb2.ROLE_ORCHESTRATOR


def _orchestrator_directory(keys: _Keys, *orchestrators: EnclaveKey) -> AttestedDialer:
    entries = {k.address: ORCHESTRATOR for k in orchestrators} | {keys.gateway.address: GATEWAY}
    return AttestedDialer(StaticDirectory(entries), DOMAIN, lambda: NOW)


async def _health_server(key: EnclaveKey, port: int = 0) -> RpcServer:
    server = create_server(
        [],
        settings=ServerSettings(
            port=port,
            graceful_shutdown_seconds=0,
            tls_identity=functools.partial(make_tls_identity, key, DOMAIN, now=NOW),
        ),
    )
    await server.start()
    return server


async def _serving(stub: Any) -> int:
    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(response.status)


async def test_a_runner_refuses_an_orchestrator_that_is_a_registered_gateway(
    keys: _Keys, impostor: StartImpostor
) -> None:
    """open_peer (the runner's and the orchestrator's dial) keeps refusing, sending nothing."""
    orchestrator = EnclaveKey.generate()
    seen = await impostor(functools.partial(make_tls_identity, keys.gateway, DOMAIN, now=NOW))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    peer = await open_peer(
        seen.target,
        ChannelSettings(),
        attested=_orchestrator_directory(keys, orchestrator),
        role=ORCHESTRATOR,
        stop=stop,
        retry_seconds=0.1,
    )
    assert peer is None
    assert seen.received == []
    assert len(seen.handshakes) >= 2  # retried, refused each time


async def test_a_pinned_stub_follows_a_restarted_peer_and_refuses_an_impostor(
    keys: _Keys, servers: list[RpcServer], impostor: StartImpostor
) -> None:
    first_key, second_key = EnclaveKey.generate(), EnclaveKey.generate()
    dialer = _orchestrator_directory(keys, first_key, second_key)
    first = await _health_server(first_key)
    servers.append(first)
    port = int(first.target.rpartition(":")[2])
    peer = await PeerChannel.open(
        first.target, ChannelSettings(), attested=dialer, role=ORCHESTRATOR
    )
    stub = peer.stub(health_pb2_grpc.HealthStub)
    assert await _serving(stub) == health_pb2.HealthCheckResponse.SERVING
    assert peer.peer is not None
    assert peer.peer.address == first_key.address

    # restarted with a new registered key: before the next call the stub sees the new
    # certificate, dials again and verifies it; the call goes through
    await first.stop(0)
    second = await _health_server(second_key, port)
    servers.append(second)
    assert await _serving(stub) == health_pb2.HealthCheckResponse.SERVING
    assert peer.peer is not None
    assert peer.peer.address == second_key.address

    # replaced by an impostor (an unregistered key): refused at every re-dial, sent nothing
    await second.stop(0)
    stranger = EnclaveKey.generate()
    seen = await impostor(functools.partial(make_tls_identity, stranger, DOMAIN, now=NOW), port)
    for _ in range(2):
        with pytest.raises(NoxError) as refused:
            await _serving(stub)
        assert is_unavailable(refused.value)
    assert seen.handshakes
    assert seen.received == []
    assert peer.peer.address == second_key.address  # the impostor was never adopted
    await peer.close()


def test_every_channel_has_its_attested_tls_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NOX_GATEWAY_ATTESTED_TLS",
        "NOX_GATEWAY_KMS_ATTESTED_TLS",
        "NOX_ORCHESTRATOR_ATTESTED_TLS",
        "NOX_ORCHESTRATOR_GATEWAY_ATTESTED_TLS",
        "NOX_RUNNER_ORCHESTRATOR_ATTESTED_TLS",
        "NOX_RUNNER_GATEWAY_ATTESTED_TLS",
    ):
        monkeypatch.setenv(name, "true")
    gateway, orchestrator = GatewaySettings(), OrchestratorServiceSettings()
    runner = RunnerSettings()
    assert gateway.attested_tls
    assert gateway.kms_attested_tls
    assert orchestrator.attested_tls
    assert orchestrator.gateway_attested_tls
    assert runner.orchestrator_attested_tls
    assert runner.gateway_attested_tls
    with pytest.raises(ValueError, match="enclave key"):
        orchestrator.server_settings()
    identity = attested_identity(EnclaveKey.generate(), DOMAIN)
    assert orchestrator.server_settings(identity).tls_identity is identity


async def test_the_sdk_refuses_a_gateway_with_an_unbound_certificate(
    keys: _Keys, impostor: StartImpostor
) -> None:
    """`ClientSettings(gateway_attested_tls=True)`: a KMS node's real key is not a gateway."""
    seen = await impostor(functools.partial(make_tls_identity, keys.kms, DOMAIN, now=NOW))
    client = NoxClient(
        seen.target,
        directory=keys.directory,
        domain=DOMAIN,
        clock=lambda: NOW,
        settings=ClientSettings(gateway_attested_tls=True),
    )
    with pytest.raises(TlsBindingInvalid) as caught:
        async with client:
            await client.info()
    assert caught.value.metadata["check"] == "directory"
    await _nothing_sent(seen)


async def test_the_sdk_reaches_an_attested_gateway(keys: _Keys, servers: list[RpcServer]) -> None:
    server = await _health_server(keys.gateway)
    servers.append(server)
    async with NoxClient(
        server.target,
        directory=keys.directory,
        domain=DOMAIN,
        clock=lambda: NOW,
        settings=ClientSettings(gateway_attested_tls=True),
    ) as client:
        assert client._peer is not None
        assert client._peer.peer is not None
        assert client._peer.peer.address == keys.gateway.address
