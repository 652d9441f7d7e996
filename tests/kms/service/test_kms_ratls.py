"""A KMS node serving RA-TLS (`NOX_KMS_ATTESTED_TLS`): a client that checks the certificate
against the real registry (registered on the embedded chain) reaches it, pinned to that
certificate; a client expecting another role or another node is refused before any request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc.aio
import pytest
from conftest import Chain, KeyFiles, node_settings
from kms_service_support import GATEWAY, KMS

from nox.kms.config import InvalidKmsSettings
from nox.kms.node import KmsNode
from nox.kms.server import serve
from nox.rpc import RpcServer
from nox.rpc.exceptions import TlsBindingInvalid
from nox.rpc.ratls import AttestedPeer, attested_channel
from nox.v1 import kms_pb2, kms_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
async def served(chain: Chain, keys: KeyFiles) -> AsyncIterator[tuple[KmsNode, RpcServer]]:
    chain.actors.clock[0] = chain.net.backend.now()
    listening: list[tuple[KmsNode, RpcServer]] = []
    stop, started = asyncio.Event(), asyncio.Event()

    def on_listening(node: KmsNode, server: RpcServer) -> None:
        listening.append((node, server))
        started.set()

    task = asyncio.create_task(
        serve(
            node_settings(chain, keys, 1, attested_tls=True),
            directory=chain.view,
            enclave_key=chain.actors.kms[0],
            stop=stop,
            signals=(),
            on_listening=on_listening,
            clock=chain.actors.now,
        )
    )
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not listening:
        task.result()
    try:
        yield listening[0]
    finally:
        stop.set()
        await task


async def _connect(
    chain: Chain, server: RpcServer, role: int, expected: bytes | None = None
) -> tuple[grpc.aio.Channel, AttestedPeer]:
    """attested_channel, retried while the just-built server is not accepting yet."""
    for _ in range(100):
        try:
            return await attested_channel(
                server.target,
                chain.view,
                role,
                domain=chain.actors.domain,
                now=chain.actors.now(),
                expected_address=expected,
            )
        except TlsBindingInvalid as exc:
            if exc.metadata.get("check") != "handshake":
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("the KMS node never accepted a TLS handshake")


async def test_a_kms_node_serves_its_attested_certificate(
    chain: Chain, served: tuple[KmsNode, RpcServer]
) -> None:
    node, server = served
    channel, peer = await _connect(chain, server, KMS, expected=node.address)
    assert peer.address == node.address == chain.actors.kms[0].address
    async with channel:
        stub = kms_pb2_grpc.KmsServiceStub(channel)
        info = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest())
    assert info.node_index == 1


async def test_a_client_expecting_another_role_or_node_is_refused(
    chain: Chain, served: tuple[KmsNode, RpcServer]
) -> None:
    _, server = served
    await _connect(chain, server, KMS)  # reachable and valid as a KMS node
    with pytest.raises(TlsBindingInvalid) as role:
        await _connect(chain, server, GATEWAY)
    assert role.value.metadata["check"] == "directory"
    with pytest.raises(TlsBindingInvalid) as other:
        await _connect(chain, server, KMS, expected=chain.actors.kms[1].address)
    assert other.value.metadata["check"] == "address"


def test_attested_tls_and_tls_files_are_exclusive(chain: Chain, keys: KeyFiles) -> None:
    with pytest.raises(InvalidKmsSettings, match="exclusive"):
        node_settings(
            chain,
            keys,
            1,
            attested_tls=True,
            tls_cert_chain="/etc/nox/chain.pem",
            tls_private_key="/etc/nox/key.pem",
        )
    with pytest.raises(InvalidKmsSettings, match="enclave key"):
        node_settings(chain, keys, 1, attested_tls=True).server_settings()
