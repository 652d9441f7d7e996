"""A whole decryption network in one process, for the SDK's tests: the real gateway (SQLite
store) and three real KMS nodes (2-of-3) over real gRPC.

The registry and the ACL are dictionaries behind the gateway's and the KMS nodes' own
interfaces (the chain is not what these tests test); keys, envelopes, ECIES, partials,
DLEQ proofs, sealing, the store and the servers are the real ones. Node `lying_node`, when
set, answers with a share that is not its own (its answers are signed, but fail their proofs).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import Dealing, KeyShare, deal
from nox.errors import PermissionDenied
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME, KmsServicer
from nox.rpc import ChannelSettings, ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.v1 import kms_pb2_grpc

CHAIN = 31337
GATEWAY, KMS = 3, 4


@dataclass
class FakeRegistry:
    """address -> role: what RegistryView.require answers for registered, attested nodes."""

    roles: dict[bytes, int] = field(default_factory=dict)

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        if self.roles.get(address) != role:
            raise PermissionDenied("not registered in this role", reason="SIGNER_NOT_REGISTERED")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        self.require(address, role, now)


@dataclass
class FakeAcl:
    """ACL.isViewer / isPubliclyDecryptable as sets (or everyone, when `open_to_all`)."""

    viewers: set[tuple[bytes, bytes]] = field(default_factory=set)
    public: set[bytes] = field(default_factory=set)
    open_to_all: bool = False

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return self.open_to_all or (handle, account) in self.viewers

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return self.open_to_all or handle in self.public


@dataclass
class Net:
    dealing: Dealing
    acl: FakeAcl
    registry: FakeRegistry
    registry_address: bytes
    compute_address: bytes
    gateway_target: str
    gateway_address: bytes
    kms_targets: list[str]
    kms_servers: list[RpcServer]


@asynccontextmanager
async def running_network(
    tmp_path: Path,
    *,
    lying_node: int | None = None,
    acl: FakeAcl | None = None,
    gateway_key: EnclaveKey | None = None,
    registry_address: bytes | None = None,
    compute_address: bytes | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> AsyncIterator[Net]:
    """Start three KMS nodes and a gateway; stop them on exit.

    The gateway's key and deployment addresses default to fresh random ones; a test that
    deploys real contracts passes the registered gateway key and the contract addresses.
    `tls` = (CA roots, certificate chain, private key), PEM files: every server then serves
    TLS with that certificate and the gateway dials the KMS nodes trusting those roots.
    """
    serve = ServerSettings(graceful_shutdown_seconds=0)
    dial = ChannelSettings()
    if tls is not None:
        roots, chain, private_key = tls
        serve = ServerSettings(
            graceful_shutdown_seconds=0, tls_cert_chain=chain, tls_private_key=private_key
        )
        dial = ChannelSettings(tls_root_certificates=roots)
    registry, acl = FakeRegistry(), acl if acl is not None else FakeAcl()
    registry_address = registry_address or os.urandom(20)
    compute_address = compute_address or os.urandom(20)
    domain = Domain(chain_id=CHAIN, verifying_contract=registry_address)
    dealing = deal(2, 3)
    servers: list[RpcServer] = []
    endpoints: list[KmsNodeEndpoint] = []
    channels = []
    for share in dealing.shares:
        key = EnclaveKey.generate()
        registry.roles[key.address] = KMS
        if share.index == lying_node:
            share = KeyShare(share.index, (share.value + 1) % (2**255))
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=domain,
            registry=registry,
            replay=MemoryReplayCache(),
            is_publicly_decryptable=acl.is_publicly_decryptable,
        )
        spec = ServiceSpec(SERVICE_NAME, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=serve)
        await server.start()
        channel = create_channel(server.target, dial)
        stub = kms_pb2_grpc.KmsServiceStub(channel)
        servers.append(server)
        channels.append(channel)
        endpoints.append(
            KmsNodeEndpoint(index=share.index, address=key.address, call=stub.Delegate)
        )
    gateway_key = gateway_key or EnclaveKey.generate()
    registry.roles[gateway_key.address] = GATEWAY
    store = await AsyncHandleStore.open(StoreSettings(url=f"sqlite:///{tmp_path}/gateway.db"))
    ctx = GatewayContext(
        key=gateway_key,
        deployment=Deployment(
            chain_id=CHAIN, registry_address=registry_address, compute_address=compute_address
        ),
        store=store,
        directory=registry,
        acl=acl,
        kms=KmsFanout(
            endpoints,
            key=gateway_key,
            domain=domain,
            public=dealing.public,
            directory=registry,
            extra_responses=1,  # ask all three, so the client sees every node's answer
        ),
        replay=MemoryReplayCache(),
    )
    await derive_tag_key(ctx)
    gateway, _ = create_gateway_server(
        ctx,
        server_settings=serve,
        rate_limit=RateLimit(rate=1000.0, burst=1000),
    )
    await gateway.start()
    try:
        yield Net(
            dealing=dealing,
            acl=acl,
            registry=registry,
            registry_address=registry_address,
            compute_address=compute_address,
            gateway_target=gateway.target,
            gateway_address=gateway_key.address,
            kms_targets=[s.target for s in servers],
            kms_servers=servers,
        )
    finally:
        await gateway.stop(0)
        await store.close()
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
