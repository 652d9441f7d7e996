"""`noxctl serve orchestrator`, `noxctl serve ingestor` and `noxctl ingestor reingest`
(settings: NOX_ORCHESTRATOR_* and NOX_INGESTOR_* environment variables).

Each process generates its enclave key at start, registers it in NoxRegistry (simulated or
configfs TDX quote; the operator account pays gas) and re-registers before expiry; peers are
checked through a RegistryView that verifies their quotes off-chain.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import RpcChain
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.chain.registrar import ChainRegistrar, SelfRegistration
from nox.cli_support import serve_commands
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.files import private_sqlite
from nox.rpc import ChannelSettings, ServerSettings
from nox.rpc.ratls import TlsIdentity

if TYPE_CHECKING:
    from nox.ingestor import Ingestor
    from nox.queue import QueueConnection, QueueSettings

__all__ = [
    "IngestorServiceSettings",
    "OrchestratorServiceSettings",
    "queue_settings",
    "register_commands",
]


class _Common(AttestationSettings):
    """Chain and registry settings both services share (attestation: `AttestationSettings`)."""

    chain_rpc_url: str = "http://127.0.0.1:8545"
    registry_address: str = ""
    compute_address: str = ""
    acl_address: str = ""
    operator_key_file: Path | None = None
    """File holding the hex private key of the operator account that pays registration gas."""
    nats_servers: str = "nats://127.0.0.1:4222"
    """Comma-separated NATS URLs."""
    nats_user: str | None = None
    """NATS user of this service's role (with `nats_password_file`); docs/queue.md."""
    nats_password_file: Path | None = None
    nats_nkey_seed_file: Path | None = None
    """NKEY user seed file instead of user and password (needs the `nkeys` package)."""
    nats_creds_file: Path | None = None
    """NATS `.creds` file (JWT + NKEY seed) instead of user and password (needs `nkeys`)."""
    nats_tls_root_certificates: Path | None = None
    """CA of the NATS server's certificate: connect with TLS and verify the server."""
    nats_tls_cert_chain: Path | None = None
    nats_tls_private_key: Path | None = None
    dangerous_nats_no_auth: bool = False
    """Connect to NATS without credentials (a machine's own unauthenticated server only)."""
    endpoint: str = ""
    """Endpoint URI bound into the quote and the registration."""
    registration_refresh_fraction: float = Field(default=0.5, gt=0, lt=1)
    """Register again once this fraction of the registry's max attestation age has passed."""
    registration_check_seconds: float = Field(default=30.0, gt=0)
    """How often the service re-reads its own registration (health follows it)."""


class OrchestratorServiceSettings(_Common):
    """`noxctl serve orchestrator`; each field is `NOX_ORCHESTRATOR_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="NOX_ORCHESTRATOR_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int | None = None
    tls_cert_chain: Path | None = None
    """PEM certificate chain the gRPC server presents; with `tls_private_key`, TLS is on."""
    tls_private_key: Path | None = None
    """PEM private key of `tls_cert_chain`; unset (both) serves plaintext gRPC."""
    gateway_endpoint: str = "127.0.0.1:50051"
    gateway_tls_root_certificates: Path | None = None
    """PEM CA roots the gateway's TLS certificate must chain to; unset: plaintext."""
    attested_tls: bool = False
    """Serve RA-TLS: a certificate made at start, in memory, bound to the orchestrator's
    enclave key and its `endpoint` (`nox.rpc.ratls`); exclusive with the TLS files."""
    gateway_attested_tls: bool = False
    """Dial the gateway over RA-TLS: refuse it unless its certificate is bound to an active
    gateway enclave in the registry (`gateway_tls_root_certificates` is then unused)."""
    lease_seconds: int = Field(default=30, ge=1)
    heartbeat_interval: int = Field(default=5, ge=1)
    redundancy: int = Field(default=1, ge=1, le=16)
    max_attempts: int = Field(default=5, ge=1)
    retry_wait: float = Field(default=120.0, gt=0)
    runner_lost_after: float = Field(default=15.0, gt=0)
    ack_wait: float = Field(default=30.0, gt=0)
    producer_missing_after: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_tls(self) -> OrchestratorServiceSettings:
        if self.attested_tls and self.tls_cert_chain is not None:
            raise ValueError("attested_tls and tls_cert_chain are exclusive")
        return self

    def server_settings(
        self, tls_identity: Callable[[str], TlsIdentity] | None = None
    ) -> ServerSettings:
        """Where the orchestrator's gRPC server listens, TLS included; with `attested_tls`,
        its certificate comes from `tls_identity` (`nox.rpc.ratls.attested_identity`)."""
        if self.attested_tls and tls_identity is None:
            raise ValueError("attested_tls needs the orchestrator's enclave key")
        return ServerSettings(
            host=self.host,
            port=self.port,
            metrics_port=self.metrics_port,
            tls_cert_chain=self.tls_cert_chain,
            tls_private_key=self.tls_private_key,
            tls_identity=tls_identity if self.attested_tls else None,
        )

    def gateway_channel_settings(self) -> ChannelSettings:
        """How the orchestrator dials the gateway (TLS roots when configured)."""
        return ChannelSettings(tls_root_certificates=self.gateway_tls_root_certificates)


class IngestorServiceSettings(_Common):
    """`noxctl serve ingestor`; each field is `NOX_INGESTOR_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="NOX_INGESTOR_", frozen=True, extra="forbid")

    database_url: str = "sqlite:///nox-ingestor.db"
    initial_block: int | None = None
    confirmations: int = Field(default=6, ge=0)
    batch_blocks: int = Field(default=50, ge=1)
    poll_interval: float = Field(default=0.5, gt=0)


def queue_settings(s: _Common, role: str, **overrides: Any) -> QueueSettings:
    """The queue settings of a service of `role` from its NATS settings (password read from
    its file here, never logged)."""
    from nox.queue import QueueSettings
    from nox.queue.auth import inbox_prefix

    def path(p: Path | None) -> str | None:
        return None if p is None else str(p)

    password = None
    if s.nats_password_file is not None:
        password = s.nats_password_file.read_text().strip()
    return QueueSettings(
        servers=tuple(s.nats_servers.split(",")),
        user=s.nats_user,
        password=password,
        nkeys_seed_file=path(s.nats_nkey_seed_file),
        creds_file=path(s.nats_creds_file),
        tls_root_certificates=path(s.nats_tls_root_certificates),
        tls_cert_chain=path(s.nats_tls_cert_chain),
        tls_private_key=path(s.nats_tls_private_key),
        inbox_prefix=inbox_prefix(role),
        dangerous_no_auth=s.dangerous_nats_no_auth,
        **overrides,
    )


class _Chain:
    """The chain pieces a service needs: backend, registry client and verified view."""

    def __init__(self, s: _Common) -> None:
        if s.operator_key_file is None:
            raise SystemExit("OPERATOR_KEY_FILE is required (it pays registration gas)")
        self.backend = RpcChain(
            s.chain_rpc_url, private_keys=[s.operator_key_file.read_text().strip()]
        )
        self.client = RegistryClient(self.backend, s.registry_address)
        self.attestation = build_attestation(s)
        self.quote = self.attestation.quote
        self.view = self.attestation.registry_view(self.client)
        self.lock = threading.Lock()

    def registration(
        self, key: EnclaveKey, role: int, endpoint: str, s: _Common
    ) -> SelfRegistration:
        """The service's self-registration (`nox.chain.registrar`), sharing the view's lock."""
        registrar = ChainRegistrar(
            self.client, enclave=key, operator=self.backend.accounts[0], lock=self.lock
        )
        return SelfRegistration(
            registrar,
            enclave=key.address,
            role=role,
            endpoint=endpoint,
            quote=self.quote,
            refresh_fraction=s.registration_refresh_fraction,
            check_seconds=s.registration_check_seconds,
        )

    def start(self, service: str) -> None:
        """Log the TCB policy in force and start refreshing peers' collateral."""
        from nox.rpc.logging import get_logger

        self.attestation.log_policy(get_logger(f"nox.{service}"), service=service)
        self.attestation.start()


async def _until_signal(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve_orchestrator(s: OrchestratorServiceSettings) -> int:
    from nox.orchestrator.config import OrchestratorSettings
    from nox.orchestrator.directory import Serialized, Web3CanonicalChain
    from nox.orchestrator.gateway import GrpcGatewayStore
    from nox.orchestrator.server import OrchestratorNode
    from nox.rpc.peers import PeerChannel
    from nox.rpc.ratls import AttestedDialer, attested_identity
    from nox.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

    chain = _Chain(s)
    chain.start("orchestrator")
    key = EnclaveKey.generate()
    directory = Serialized(chain.view)
    endpoint = s.endpoint or f"{s.host}:{s.port}"
    registration = chain.registration(key, common_pb2.ROLE_ORCHESTRATOR, endpoint, s)
    deployment = common_pb2.Deployment(
        chain_id=chain.backend.chain_id,
        registry_address=to_bytes20(s.registry_address),
        compute_address=to_bytes20(s.compute_address),
        acl_address=to_bytes20(s.acl_address) if s.acl_address else b"",
    )
    domain = Domain(deployment.chain_id, deployment.registry_address)
    dialer = AttestedDialer(directory, domain, lambda: int(time.time()))
    # like the plain channel's first call, a gateway that does not answer (or is refused)
    # stops the start: the supervisor starts the orchestrator again
    gateway = await PeerChannel.open(
        s.gateway_endpoint, s.gateway_channel_settings(),
        attested=dialer if s.gateway_attested_tls else None, role=common_pb2.ROLE_GATEWAY,
    )  # fmt: skip
    info = await gateway.stub(gateway_pb2_grpc.GatewayServiceStub).GetGatewayInfo(
        gateway_pb2.GetGatewayInfoRequest(), timeout=10
    )
    if gateway.peer is not None and bytes(info.node.enclave_address) != gateway.peer.address:
        raise SystemExit("the gateway answers for another enclave than its RA-TLS certificate")
    store = GrpcGatewayStore(
        gateway, key=key, domain=domain, directory=directory,
        gateway_address=bytes(info.node.enclave_address), clock=time.time,
    )  # fmt: skip
    node = OrchestratorNode(
        key=key,
        deployment=deployment,
        queue=queue_settings(s, "orchestrator", ack_wait=s.ack_wait),
        directory=directory,
        gateway=store,
        settings=OrchestratorSettings(
            lease_seconds=s.lease_seconds,
            heartbeat_interval=s.heartbeat_interval,
            redundancy=s.redundancy,
            max_attempts=s.max_attempts,
            retry_wait=s.retry_wait,
            runner_lost_after=s.runner_lost_after,
            producer_missing_after=s.producer_missing_after,
        ),
        server_settings=s.server_settings(attested_identity(key, domain, s.endpoint)),
        canonical=Web3CanonicalChain(chain.backend.w3),
        ready=registration.still_registered,
    )
    stop = asyncio.Event()
    keeper = asyncio.create_task(registration.keep_registered(stop))
    await node.start()
    if node.server is not None:
        chain.attestation.register_metrics(node.server.metrics.registry)
    print(f"orchestrator 0x{key.address.hex()} on {node.target}", flush=True)
    try:
        await _until_signal(stop)
    finally:
        stop.set()
        await node.stop()
        await keeper
        await gateway.close()
        chain.attestation.close()
    return 0


def _ingestor(s: IngestorServiceSettings) -> tuple[_Chain, EnclaveKey, SelfRegistration]:
    """The ingestor's chain, a fresh enclave key and its (not yet done) registration."""
    from nox.v1 import common_pb2

    chain = _Chain(s)
    chain.start("ingestor")
    key = EnclaveKey.generate()
    registration = chain.registration(key, common_pb2.ROLE_INGESTOR, s.endpoint, s)
    return chain, key, registration


def _build_ingestor(
    s: IngestorServiceSettings, chain: _Chain, key: EnclaveKey, conn: QueueConnection
) -> Ingestor:
    """The Ingestor; a duplicate signed by another active ingestor of the registry counts
    as its own message (docs/queue.md)."""
    import sqlalchemy as sa

    from nox.ingestor import CursorStore, Ingestor, IngestorSettings, Web3ChainSource
    from nox.v1 import common_pb2

    settings = IngestorSettings(
        chain_id=chain.backend.chain_id,
        compute_address=to_bytes20(s.compute_address),
        registry_address=to_bytes20(s.registry_address),
        initial_block=s.initial_block,
        confirmations=s.confirmations,
        batch_blocks=s.batch_blocks,
        poll_interval=s.poll_interval,
    )

    def authorize_peer(signer: bytes, now: int) -> None:
        chain.view.require(signer, common_pb2.ROLE_INGESTOR, now)

    return Ingestor(
        settings=settings,
        key=key,
        source=Web3ChainSource(chain.backend.w3, settings.compute_address),
        cursor=CursorStore(
            sa.create_engine(private_sqlite(s.database_url)),
            chain_id=settings.chain_id,
            compute_address=settings.compute_address,
        ),
        conn=conn,
        authorize_peer=authorize_peer,
    )


async def serve_ingestor(s: IngestorServiceSettings) -> int:
    from nox.queue import connect, ensure_streams

    chain, key, registration = _ingestor(s)
    conn = await connect(queue_settings(s, "ingestor"))
    await ensure_streams(conn)
    ingestor = _build_ingestor(s, chain, key, conn)
    ingestor.load()
    stop = asyncio.Event()
    registered = asyncio.Event()

    def on_change(ok: bool) -> None:
        if ok:
            registered.set()

    keeper = asyncio.create_task(registration.keep_registered(stop, on_change=on_change))
    await registered.wait()  # publish nothing before registering
    running = asyncio.create_task(ingestor.run(stop))
    print(f"ingestor 0x{key.address.hex()} from block {ingestor.cursor}", flush=True)
    try:
        await _until_signal(stop)
    finally:
        stop.set()
        await running
        await keeper
        await conn.close()
        chain.attestation.close()
    return 0


async def reingest(s: IngestorServiceSettings, from_block: int, to_block: int) -> int:
    """Publish blocks from_block..to_block again with a freshly registered ingestor key."""
    from nox.queue import connect, ensure_streams

    chain, key, registration = _ingestor(s)
    conn = await connect(queue_settings(s, "ingestor"))
    try:
        await ensure_streams(conn)
        ingestor = _build_ingestor(s, chain, key, conn)
        await asyncio.to_thread(registration.register_now)
        count = await ingestor.reingest(from_block, to_block)
    finally:
        await conn.close()
    squatted = ingestor.publisher.republished
    print(f"reingested blocks {from_block}..{to_block}: {count} transaction messages"
          f" ({squatted} republished under their payload id)", flush=True)  # fmt: skip
    return 0


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve orchestrator` and `serve ingestor` (creating `serve` if needed)."""
    services = serve_commands(subparsers)
    orch = services.add_parser(
        "orchestrator", help="an orchestrator (settings: NOX_ORCHESTRATOR_* variables)"
    )
    orch.set_defaults(
        func=lambda _a: asyncio.run(serve_orchestrator(OrchestratorServiceSettings()))
    )
    ing = services.add_parser("ingestor", help="an ingestor (settings: NOX_INGESTOR_* variables)")
    ing.set_defaults(func=lambda _a: asyncio.run(serve_ingestor(IngestorServiceSettings())))
    tools = subparsers.add_parser("ingestor", help="ingestor tools (settings: NOX_INGESTOR_*)")
    tool = tools.add_subparsers(dest="ingestor_command", required=True)
    again = tool.add_parser(
        "reingest",
        help="publish the transactions of a block range again (deduplicated against the"
        " stream): recovers a transaction that was lost or suppressed",
    )
    again.add_argument("--from-block", type=int, required=True)
    again.add_argument("--to-block", type=int, required=True)
    again.set_defaults(
        func=lambda a: asyncio.run(reingest(IngestorServiceSettings(), a.from_block, a.to_block))
    )
