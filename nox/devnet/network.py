"""The whole network in one process: `Devnet.start()` brings it up in order, `stop()` undoes it.

Order (each step printed as it starts):
 1. NATS JetStream: the bundled nats-server (`nox.queue.NatsServerProcess`);
 2. the chain: an in-process EVM with NoxRegistry, ACL, NoxCompute and a ConfidentialToken;
 3. simulated TDX: a dev PKI generated for this devnet, trusted explicitly by every verifier;
 4. governance: the devnet's workload id allowlisted for every role;
 5. the KMS key ceremony: a t-of-n dealing, sealed share files, the key set on-chain;
 6. the KMS nodes (gRPC), each registering itself as a KMS enclave;
 7. the gateway (SQLite store), registering itself;
 8. the orchestrator (JetStream consumer), registering itself;
 9. the ingestor (NoxCompute events -> JetStream), registering itself;
10. the runners, which register themselves too.

Every service registers its own enclave key through `nox.chain.registrar` (permit signed by
the enclave, operator pays) and keeps the registration fresh in the background.

Every enclave key is generated in memory and never written anywhere. Services share one
chain backend and one cached registry view behind one lock (`nox.devnet.chain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from attestation.binding import Role
from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.chain.backend import ChainBackend, EmbeddedChain
from nox.chain.deploy import Deployment, deploy_all
from nox.crypto.keys import EnclaveKey, checksum
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import ThresholdPublicKey, deal
from nox.devnet.chain import SharedChain
from nox.devnet.config import DevnetSettings
from nox.devnet.exceptions import DevnetStartFailed
from nox.files import private_dir, private_sqlite, write_private
from nox.queue import QueueSettings, connect
from nox.queue.auth import ROLES
from nox.queue.server import NatsServerProcess
from nox.rpc import RpcServer, ServerSettings, create_channel

if TYPE_CHECKING:
    from nox.sdk import NoxClient

Progress = Callable[[str], None]

WORKLOAD_ID = Measurements(mr_td=DEFAULT_MR_TD).workload_id
"""The workload id of the simulated TD every devnet service runs in."""

# Files and folders of a devnet's state directory (removed again at the next start).
_STATE_ENTRIES = (
    "tdx",
    "kms",
    "nats",
    "gateway.sqlite3",
    "ingestor.sqlite3",
    "devnet.json",
    "keys",
    "logs",
)


def _quiet(message: str) -> None:
    del message


@dataclass
class Endpoint:
    """One running service as the summary shows it."""

    name: str
    role: str
    target: str
    address: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role,
            "target": self.target,
            "enclave_address": checksum(self.address),
        }


@dataclass
class Devnet:
    """A running devnet (see the module docstring); `async with Devnet(settings) as net:`."""

    settings: DevnetSettings = field(default_factory=DevnetSettings)
    progress: Progress = _quiet

    nats: NatsServerProcess | None = field(default=None, init=False)
    queue: QueueSettings | None = field(default=None, init=False)
    chain: SharedChain | None = field(default=None, init=False)
    kms_public: ThresholdPublicKey | None = field(default=None, init=False)
    endpoints: list[Endpoint] = field(default_factory=list, init=False)
    gateway_target: str = field(default="", init=False)
    kms_targets: list[str] = field(default_factory=list, init=False)
    services: list[str] = field(default_factory=list, init=False)
    """The services actually running, in start order (the summary's list)."""

    _servers: list[RpcServer] = field(default_factory=list, init=False)
    _channels: list[Any] = field(default_factory=list, init=False)
    _closers: list[Callable[[], Any]] = field(default_factory=list, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _loops: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    runners: list[Any] = field(default_factory=list, init=False)
    orchestrator: Any = field(default=None, init=False)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Devnet:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    chain_label = "in-process EVM"
    """How step 2 and the summary name the chain."""
    enclave_keys_note = "in memory only, never written"
    """Where the services' enclave keys live (the summary says it)."""

    def _step(self, number: int, text: str) -> None:
        self.progress(f"[{number:>2}/10] {text}")

    async def start(self) -> None:
        """Bring every service up, in order; raise DevnetStartFailed naming the step."""
        self._prepare_state()
        self._step(1, "NATS JetStream (bundled nats-server)")
        await self._start_nats()
        self._step(2, f"{self.chain_label}: NoxRegistry, ACL, NoxCompute, ConfidentialToken")
        deployment, backend = await asyncio.to_thread(self._deploy)
        self._step(3, f"simulated TDX: dev root CA in {self.state_dir / 'tdx'}")
        tdx = private_dir(self.state_dir / "tdx")
        sim = await asyncio.to_thread(SimulatedTdx.create, tdx)
        chain = SharedChain(
            backend, deployment, sim, operator=backend.accounts[1], governance=backend.deployer
        )
        self.chain = chain
        self._step(4, f"governance: allowlist workload 0x{WORKLOAD_ID.hex()[:16]}… for every role")
        await asyncio.to_thread(self._allowlist)
        s = self.settings
        self._step(5, f"KMS key ceremony: {s.kms_threshold}-of-{s.kms_nodes}")
        shares = await asyncio.to_thread(self._keygen)
        self._step(6, f"{s.kms_nodes} KMS nodes")
        await self._start_kms(shares)
        store = (s.store_url or "sqlite").split(":")[0].split("+")[0]
        self._step(7, f"gateway (store: {store})")
        gateway = await self._start_gateway()
        self._step(8, "orchestrator")
        orchestrator = await self._start_orchestrator(gateway)
        self._step(9, "ingestor")
        await self._start_ingestor()
        self._step(10, f"{s.runners} runners (self-registering)")
        await self._start_runners(orchestrator, gateway)
        write_private(self.state_dir / "devnet.json", json.dumps(self.to_json(), indent=2) + "\n")

    async def stop(self) -> None:
        """Stop everything that was started, last first; safe to call twice."""
        self._stop.set()
        for loop in reversed(self._loops):
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(loop, timeout=10)
        self._loops.clear()
        for close in reversed(self._closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result
        self._closers.clear()
        for channel in self._channels:
            await channel.close(None)
        self._channels.clear()
        for server in reversed(self._servers):
            await server.stop(0)
        self._servers.clear()
        if self.nats is not None:
            await asyncio.to_thread(self.nats.close)
            self.nats = None

    # ------------------------------------------------------------------ steps

    def _prepare_state(self) -> None:
        private_dir(self.state_dir)
        for name in _STATE_ENTRIES:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _role_queue(self, role: str) -> QueueSettings:
        """The queue settings of a service of `role` on the devnet's nats-server."""
        assert self.nats is not None
        assert self.queue is not None
        return self.nats.user(role).settings(self.queue)

    async def _start_nats(self) -> None:
        self.nats = NatsServerProcess(self.state_dir / "nats")
        await asyncio.to_thread(self.nats.start)
        # authentication on: each service connects as its role (nox.queue.auth)
        self.queue = self.nats.settings("admin")
        self.services.append("nats")

    def _deploy(self) -> tuple[Deployment, ChainBackend]:
        backend = EmbeddedChain()
        deployment = deploy_all(backend, with_token=True)
        self.services.append("chain")
        return deployment, backend

    def _allowlist(self) -> None:
        chain = self._chain()
        for role in (Role.ORCHESTRATOR, Role.RUNNER, Role.GATEWAY, Role.KMS, Role.INGESTOR):
            chain.registry.allow_workload(int(role), WORKLOAD_ID, chain.governance)

    def _keygen(self) -> list[Path]:
        from nox.kms.keys import load_kek_file, write_kek_file, write_public_file, write_share_file

        s, chain = self.settings, self._chain()
        out = private_dir(self.state_dir / "kms")
        dealing = deal(s.kms_threshold, s.kms_nodes)
        paths = []
        for share in dealing.shares:
            kek_path = out / f"kek-{share.index}"
            write_kek_file(kek_path)
            path = out / f"share-{share.index}.json"
            write_share_file(path, share, dealing.public, load_kek_file(kek_path))
            paths.append(path)
        write_public_file(out / "public.json", dealing.public)
        public = dealing.public
        del dealing  # the dealer's copy of the key goes (docs/kms.md)
        chain.registry.set_kms_keys(
            public.public_key, public.public_shares, public.threshold, chain.governance
        )
        self.kms_public = public
        return paths

    async def _start_kms(self, shares: list[Path]) -> None:
        from nox.kms.config import KmsSettings
        from nox.kms.server import build_node, build_server

        chain = self._chain()
        for share_path in shares:
            index = share_path.stem.split("-")[1]
            # model_validate: from these values only, no NOX_KMS_* environment variables
            settings = KmsSettings.model_validate(
                {
                    "host": self.settings.host,
                    "port": 0,
                    "chain_id": chain.chain_id,
                    "registry_address": "0x" + chain.registry_address.hex(),
                    "acl_address": "0x" + chain.acl_address.hex(),
                    "share_file": share_path,
                    "kek_file": share_path.parent / f"kek-{index}",
                    "public_file": share_path.parent / "public.json",
                    "graceful_shutdown_seconds": 0,
                }
            )
            key = EnclaveKey.generate()
            node = await asyncio.to_thread(
                build_node,
                settings,
                directory=chain.views,
                enclave_key=key,
                is_publicly_decryptable=chain.views.is_publicly_decryptable,
            )
            server = build_server(node, settings)
            await self._self_register(key, int(Role.KMS), server.target)
            if not await asyncio.to_thread(node.check_registered, node.now()):
                raise DevnetStartFailed(f"KMS node {node.index} does not see its registration")
            await server.start()
            await server.set_serving("nox.v1.KmsService", node.ready)
            self._servers.append(server)
            self.kms_targets.append(server.target)
            self.endpoints.append(Endpoint(f"kms-{node.index}", "kms", server.target, key.address))
        self.services.append(f"kms x{len(shares)} ({self.settings.kms_threshold}-of-{len(shares)})")

    async def _self_register(self, key: EnclaveKey, role: int, endpoint: str) -> None:
        """The service's own registration (`nox.chain.registrar`), kept fresh in the
        background like every service does in production; the key stays in this process."""
        registration = self._chain().self_registration(key, role, endpoint)
        if not await asyncio.to_thread(registration.check):
            raise DevnetStartFailed(f"role {role} did not register: {registration.reason}")
        self._loops.append(asyncio.create_task(registration.keep_registered(self._stop)))

    async def _start_gateway(self) -> bytes:
        """Start the gateway; return its enclave address."""
        from nox.gateway.context import Deployment as GatewayDeployment
        from nox.gateway.context import GatewayContext
        from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
        from nox.gateway.limits import RateLimit
        from nox.gateway.server import create_gateway_server
        from nox.gateway.store import AsyncHandleStore, StoreSettings
        from nox.gateway.tagkey import derive_tag_key
        from nox.v1 import kms_pb2, kms_pb2_grpc

        chain, public = self._chain(), self.kms_public
        assert public is not None
        key = EnclaveKey.generate()
        nodes = []
        for target in self.kms_targets:
            channel = create_channel(target)
            self._channels.append(channel)
            stub = kms_pb2_grpc.KmsServiceStub(channel)
            info = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest(), timeout=10)
            nodes.append(
                KmsNodeEndpoint(
                    index=info.node_index,
                    address=bytes(info.node.enclave_address),
                    call=stub.Delegate,
                )
            )
        store = await AsyncHandleStore.open(
            StoreSettings(
                url=self.settings.store_url or f"sqlite:///{self.state_dir / 'gateway.sqlite3'}"
            )
        )
        self._closers.append(store.close)
        ctx = GatewayContext(
            key=key,
            deployment=GatewayDeployment(
                chain_id=chain.chain_id,
                registry_address=chain.registry_address,
                compute_address=chain.compute_address,
                acl_address=chain.acl_address,
            ),
            store=store,
            directory=chain.views,
            acl=chain.views,
            kms=KmsFanout(
                nodes, key=key, domain=chain.domain, public=public, directory=chain.views
            ),
            replay=MemoryReplayCache(),
        )
        server, _ = create_gateway_server(
            ctx,
            server_settings=ServerSettings(host=self.settings.host, graceful_shutdown_seconds=0),
            rate_limit=RateLimit(rate=1000.0, burst=1000),
        )
        await self._self_register(key, int(Role.GATEWAY), server.target)
        await derive_tag_key(ctx)  # registered first: the KMS serves registered gateways only
        await server.start()
        self._servers.append(server)
        self.gateway_target = server.target
        self.endpoints.append(Endpoint("gateway", "gateway", server.target, key.address))
        self.services.append("gateway")
        return key.address

    async def _start_orchestrator(self, gateway: bytes) -> bytes:
        """Start the orchestrator (storing results at `gateway`); return its address."""
        from nox.orchestrator import GrpcGatewayStore, OrchestratorNode, OrchestratorSettings
        from nox.orchestrator.directory import Web3CanonicalChain
        from nox.v1 import common_pb2

        chain, queue = self._chain(), self.queue
        assert queue is not None
        key = EnclaveKey.generate()
        channel = create_channel(self.gateway_target)
        self._channels.append(channel)
        node = OrchestratorNode(
            key=key,
            deployment=common_pb2.Deployment(
                chain_id=chain.chain_id,
                registry_address=chain.registry_address,
                compute_address=chain.compute_address,
                acl_address=chain.acl_address,
            ),
            queue=self._role_queue("orchestrator"),
            directory=chain.views,
            gateway=GrpcGatewayStore(
                channel,
                key=key,
                domain=chain.domain,
                gateway_address=gateway,
                directory=chain.views,
                clock=time.time,
            ),
            settings=OrchestratorSettings(
                heartbeat_interval=2, runner_lost_after=8.0, max_claim_wait=2.0, fetch_wait=0.5
            ),
            server_settings=ServerSettings(host=self.settings.host, graceful_shutdown_seconds=0),
            canonical=Web3CanonicalChain(chain.backend.w3),
        )
        await node.start()
        self._closers.append(node.stop)
        self.orchestrator = node
        await self._self_register(key, int(Role.ORCHESTRATOR), node.target)
        self.endpoints.append(Endpoint("orchestrator", "orchestrator", node.target, key.address))
        self.services.append("orchestrator")
        return key.address

    async def _start_ingestor(self) -> None:
        from nox.ingestor.config import IngestorSettings
        from nox.ingestor.cursor import CursorStore
        from nox.ingestor.service import Ingestor
        from nox.ingestor.source import Web3ChainSource

        chain, queue = self._chain(), self.queue
        assert queue is not None
        key = EnclaveKey.generate()
        await self._self_register(key, int(Role.INGESTOR), "")
        engine = sa.create_engine(
            private_sqlite(f"sqlite:///{self.state_dir / 'ingestor.sqlite3'}")
        )
        self._closers.append(engine.dispose)
        conn = await connect(self._role_queue("ingestor"), name="nox-devnet-ingestor")
        self._closers.append(conn.close)
        ingestor = Ingestor(
            settings=IngestorSettings(
                chain_id=chain.chain_id,
                compute_address=chain.compute_address,
                registry_address=chain.registry_address,
                initial_block=0,  # the token's constructor already asked for a value
                confirmations=0,  # one process, one chain: no reorg to wait out
                poll_interval=0.2,
            ),
            key=key,
            source=Web3ChainSource(chain.backend.w3, chain.compute_address),
            cursor=CursorStore(
                engine, chain_id=chain.chain_id, compute_address=chain.compute_address
            ),
            conn=conn,
            authorize_peer=lambda signer, now: chain.views.require(signer, int(Role.INGESTOR), now),
        )
        self._loops.append(asyncio.create_task(ingestor.run(self._stop)))
        self.endpoints.append(Endpoint("ingestor", "ingestor", "-", key.address))
        self.services.append("ingestor")

    async def _start_runners(self, orchestrator: bytes, gateway: bytes) -> None:
        from nox.chain.registrar import ChainRegistrar
        from nox.runner.agent import AgentSettings, RunnerAgent
        from nox.runner.executor import ExecutorConfig, TaskExecutor
        from nox.v1 import gateway_pb2_grpc, orchestrator_pb2_grpc

        chain, public = self._chain(), self.kms_public
        assert public is not None
        orch_target = self.orchestrator.target
        for i in range(1, self.settings.runners + 1):
            key = EnclaveKey.generate()
            replay = MemoryReplayCache()
            orch_channel = create_channel(orch_target)
            gw_channel = create_channel(self.gateway_target)
            self._channels += [orch_channel, gw_channel]
            agent = RunnerAgent(
                executor=TaskExecutor(
                    key=key,
                    config=ExecutorConfig(
                        domain=chain.domain,
                        kms_public=public,
                        compute_address=chain.compute_address,
                    ),
                    directory=chain.views,
                    replay=replay,
                ),
                settings=AgentSettings(
                    capacity=self.settings.runner_capacity,
                    claim_wait_seconds=1,
                    heartbeat_seconds=2.0,
                    retry_seconds=0.2,
                ),
                directory=chain.views,
                registrar=ChainRegistrar(
                    chain.registry, enclave=key, operator=chain.operator, lock=chain.lock
                ),
                quote_provider=chain.sim,
                orchestrator=orchestrator_pb2_grpc.OrchestratorServiceStub(orch_channel),
                gateway=gateway_pb2_grpc.GatewayServiceStub(gw_channel),
                orchestrator_address=orchestrator,
                gateway_address=gateway,
                replay=replay,
                orchestrator_endpoint=orch_target,
            )
            self.runners.append(agent)
            self._loops.append(asyncio.create_task(agent.run(self._stop)))
            self.endpoints.append(Endpoint(f"runner-{i}", "runner", "(outbound)", key.address))
        deadline = time.monotonic() + self.settings.ready_timeout
        while not all(a.ready and a.orchestrator_connected for a in self.runners):
            if time.monotonic() > deadline:
                states = ", ".join(f"{a.not_ready_reason}" for a in self.runners)
                raise DevnetStartFailed(f"runners not ready in time ({states})")
            await asyncio.sleep(0.1)
        self.services.append(f"runner x{len(self.runners)}")

    @property
    def chain_rpc_url(self) -> str | None:
        """The chain's JSON-RPC URL for other processes (None: the EVM is in this process)."""
        return None

    def align_chain_clock(self) -> None:
        """Make the next block's timestamp not earlier than the wall clock (input proofs
        carry the gateway's wall-clock time and NoxCompute refuses one from the future).
        The embedded EVM stamps blocks with the wall clock already."""

    # ------------------------------------------------------------------ views

    def _chain(self) -> SharedChain:
        if self.chain is None:
            raise DevnetStartFailed("the chain is not started")
        return self.chain

    def _nats_users(self) -> dict[str, dict[str, str]]:
        if self.nats is None:
            return {}
        users = {role: self.nats.user(role) for role in ROLES}
        return {
            r: {"user": u.user, "password_file": str(u.password_file)} for r, u in users.items()
        }

    gateway_attested_tls: ClassVar[bool] = False
    """Whether the gateway serves RA-TLS (the multi-process devnet's does)."""

    def client(self) -> NoxClient:
        """An SDK client of this devnet's gateway (over RA-TLS when the gateway serves it),
        checking it and the KMS answers against the registry; use it with `async with`."""
        from nox.sdk import ClientSettings, NoxClient

        chain = self._chain()
        return NoxClient(
            self.gateway_target,
            directory=chain.views,
            kms_public=self.kms_public,
            kms_directory=chain.views,
            domain=chain.domain,
            settings=ClientSettings(gateway_attested_tls=self.gateway_attested_tls),
        )

    def to_json(self) -> dict[str, Any]:
        """Endpoints, contracts, chain id and file locations (written to devnet.json)."""
        chain = self._chain()
        public = self.kms_public
        return {
            "chain_id": chain.chain_id,
            "chain": self.chain_label,
            "chain_rpc_url": self.chain_rpc_url,
            "contracts": chain.deployment.to_json(),
            "nats": self.nats.url if self.nats is not None else None,
            # user names and password files of the NATS roles (files 0600, folder 0700)
            "nats_users": self._nats_users(),
            "gateway": self.gateway_target,
            "kms": self.kms_targets,
            "kms_public_key": "0x" + public.public_key.hex() if public else None,
            "kms_threshold": public.threshold if public else None,
            "workload_id": "0x" + WORKLOAD_ID.hex(),
            "governance": chain.governance.address,
            "operator": chain.operator.address,
            "services": list(self.services),
            "enclave_keys": self.enclave_keys_note,
            "endpoints": [e.to_json() for e in self.endpoints],
            "state_dir": str(self.state_dir),
            "files": {
                "dev_root_ca": str(self.state_dir / "tdx" / "root.der"),
                "kms_shares": str(self.state_dir / "kms"),
                "kms_public": str(self.state_dir / "kms" / "public.json"),
                "gateway_store": str(self.state_dir / "gateway.sqlite3"),
            },
        }
