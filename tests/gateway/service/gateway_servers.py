"""Servers for the GatewayService tests: a real 2-of-3 KMS and a gateway over real gRPC.

(A uniquely named module rather than conftest.py, so test modules can import it whatever
other conftest modules the whole suite has loaded.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from gateway_support import (
    ACL,
    CHAIN_ID,
    COMPUTE,
    DOMAIN,
    KMS,
    REGISTRY,
    Actors,
    Clock,
    FakeAcl,
    FakeRegistry,
)
from tagkeys import tag_key_of

from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, SqlReplayCache
from nox.crypto.threshold import Dealing, deal
from nox.gateway.context import Deployment, GatewayContext, GatewayLimits
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.service import GatewayServicer
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.v1 import gateway_pb2_grpc, kms_pb2_grpc


@dataclass
class Kms:
    dealing: Dealing
    keys: list[EnclaveKey]
    servers: list[RpcServer]
    channels: list[grpc.aio.Channel]

    def endpoints(self) -> list[KmsNodeEndpoint]:
        return [
            KmsNodeEndpoint(
                index=i,
                address=key.address,
                call=kms_pb2_grpc.KmsServiceStub(channel).Delegate,
            )
            for i, (key, channel) in enumerate(zip(self.keys, self.channels, strict=True), 1)
        ]


@dataclass
class GatewayNet:
    """Everything a test needs: the gateway's stub, its parts, and the actors."""

    clock: Clock
    registry: FakeRegistry
    acl: FakeAcl
    kms: Kms
    key: EnclaveKey
    ctx: GatewayContext
    server: RpcServer
    servicer: GatewayServicer
    channel: grpc.aio.Channel
    stub: gateway_pb2_grpc.GatewayServiceStub
    actors: Actors
    store_url: str

    @property
    def public(self):  # type: ignore[no-untyped-def]
        return self.kms.dealing.public


async def start_kms(
    registry: FakeRegistry, clock: Clock, is_publicly_decryptable: Callable[[bytes], bool]
) -> Kms:
    """Three KMS nodes (2-of-3) over real gRPC, enrolled in `registry`."""
    dealing = deal(2, 3)
    keys = [registry.enrol(KMS) for _ in range(3)]
    servers, channels = [], []
    for share, key in zip(dealing.shares, keys, strict=True):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=DOMAIN,
            registry=registry,
            replay=MemoryReplayCache(),
            clock=clock,
            is_publicly_decryptable=is_publicly_decryptable,
        )
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channels.append(create_channel(server.target))
    return Kms(dealing, keys, servers, channels)


async def stop_kms(kms: Kms) -> None:
    for channel in kms.channels:
        await channel.close(None)
    for server in kms.servers:
        await server.stop(0)


async def start_gateway(
    *,
    store_url: str,
    clock: Clock,
    registry: FakeRegistry,
    acl: FakeAcl,
    kms: Kms,
    key: EnclaveKey,
    orchestrator: EnclaveKey,
    runner: EnclaveKey,
    limits: GatewayLimits | None = None,
    rate_limit: RateLimit | None = None,
) -> GatewayNet:
    """A gateway server on a free port over the database at `store_url`."""
    store = AsyncHandleStore(
        HandleStore.open(StoreSettings(url=store_url, pool_size=4), clock=clock)
    )
    ctx = GatewayContext(
        key=key,
        deployment=Deployment(CHAIN_ID, REGISTRY, COMPUTE, ACL),
        store=store,
        directory=registry,
        acl=acl,
        kms=KmsFanout(
            kms.endpoints(),
            key=key,
            domain=DOMAIN,
            public=kms.dealing.public,
            directory=registry,
            clock=clock,
        ),
        replay=SqlReplayCache(store.engine),
        limits=limits or GatewayLimits(),
        clock=clock,
    )
    server, servicer = create_gateway_server(
        ctx,
        server_settings=ServerSettings(graceful_shutdown_seconds=0),
        rate_limit=rate_limit or RateLimit(rate=1000.0, burst=1000),
        monotonic=lambda: float(clock.now),
    )
    await derive_tag_key(ctx)  # as `nox.gateway.server.build_gateway` does before serving
    await server.start()
    channel = create_channel(server.target)
    return GatewayNet(
        clock=clock,
        registry=registry,
        acl=acl,
        kms=kms,
        key=key,
        ctx=ctx,
        server=server,
        servicer=servicer,
        channel=channel,
        stub=gateway_pb2_grpc.GatewayServiceStub(channel),
        actors=Actors(
            orchestrator, runner, key.address, clock, tag_key=tag_key_of(kms.dealing, DOMAIN)
        ),
        store_url=store_url,
    )


async def stop_gateway(net: GatewayNet) -> None:
    await net.channel.close(None)
    await net.server.stop(0)
    await net.ctx.store.close()
