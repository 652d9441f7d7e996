"""Wiring one orchestrator instance: queue consumer, scheduler, gateway client, gRPC server.

`OrchestratorNode` owns what it starts and stops it in reverse order. The chain views (node
directory, canonical chain) and the gateway store are passed in, so the devnet, the CLI and
tests plug in the real registry or doubles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from prometheus_client import CollectorRegistry

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, ReplayCache
from nox.orchestrator.config import OrchestratorSettings
from nox.orchestrator.directory import CanonicalChain, NodeDirectory
from nox.orchestrator.gateway import GatewayStore
from nox.orchestrator.scheduler import OrchestratorMetrics, Scheduler
from nox.orchestrator.service import SERVICE_NAME, OrchestratorServicer
from nox.orchestrator.tasks import TaskSpec, TransactionDecoder, check_task_msg_id
from nox.queue import QueueConnection, QueueMetrics, QueueSettings, TxConsumer, connect
from nox.queue.stream import ensure_streams
from nox.rpc import RpcServer, ServerSettings, ServiceSpec, create_server
from nox.v1 import common_pb2, orchestrator_pb2_grpc

__all__ = ["OrchestratorNode"]


@dataclass
class OrchestratorNode:
    """One running orchestrator instance (use `await node.start()` or `async with`)."""

    key: EnclaveKey
    deployment: common_pb2.Deployment
    queue: QueueSettings
    directory: NodeDirectory
    gateway: GatewayStore
    settings: OrchestratorSettings = field(default_factory=OrchestratorSettings)
    server_settings: ServerSettings = field(default_factory=ServerSettings)
    canonical: CanonicalChain | None = None
    replay: ReplayCache = field(default_factory=MemoryReplayCache)
    clock: Callable[[], float] = time.time
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    software_version: str = ""
    ready: Callable[[], bool] = lambda: True
    """Attested and registered (the caller's registration loop says); gates runner calls."""

    conn: QueueConnection | None = field(default=None, init=False)
    consumer: TxConsumer[TaskSpec] | None = field(default=None, init=False)
    scheduler: Scheduler | None = field(default=None, init=False)
    server: RpcServer | None = field(default=None, init=False)

    @property
    def domain(self) -> Domain:
        return Domain(self.deployment.chain_id, self.deployment.registry_address)

    @property
    def address(self) -> bytes:
        return self.key.address

    @property
    def target(self) -> str:
        if self.server is None:
            raise RuntimeError("orchestrator not started")
        return self.server.target

    async def start(self) -> None:
        domain = self.domain
        decoder = TransactionDecoder(
            domain=domain,
            compute_address=self.deployment.compute_address,
            directory=self.directory,
            clock=self.clock,
            max_ttl=self.settings.transaction_max_ttl,
            max_skew=self.settings.max_skew,
        )
        self.conn = await connect(self.queue, name=f"nox-orchestrator-{self.key.address.hex()}")
        await ensure_streams(self.conn)
        self.consumer = TxConsumer(
            self.conn, decode=decoder, metrics=QueueMetrics(self.registry), clock=self.clock,
            check_id=check_task_msg_id,
        )  # fmt: skip
        await self.consumer.start()
        self.scheduler = Scheduler(
            key=self.key,
            domain=domain,
            settings=self.settings,
            consumer=self.consumer,
            gateway=self.gateway,
            directory=self.directory,
            metrics=OrchestratorMetrics(self.registry),
            canonical=self.canonical,
            clock=self.clock,
        )
        self.scheduler.start()
        conn = self.conn
        servicer = OrchestratorServicer(
            scheduler=self.scheduler,
            key=self.key,
            domain=domain,
            directory=self.directory,
            replay=self.replay,
            settings=self.settings,
            deployment=self.deployment,
            clock=self.clock,
            software_version=self.software_version,
            ready=self.ready,
            connected=lambda: conn.connected,
        )
        spec = ServiceSpec(
            name=SERVICE_NAME,
            add=orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
            servicer=servicer,
        )
        self.server = create_server([spec], settings=self.server_settings)
        await self.server.start()

    async def stop(self) -> None:
        """Stop serving; unsettled queue messages are redelivered to other instances."""
        if self.server is not None:
            await self.server.stop(0.5)
            self.server = None
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.consumer is not None:
            await self.consumer.close()
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def __aenter__(self) -> OrchestratorNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
