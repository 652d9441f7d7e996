"""The multi-process network the pipeline benchmarks run on (shared by bench/pipeline.py).

What runs where (the shape of tests/orchestrator/test_orchestrator_runner_kill.py):
- its own processes: nats-server (JetStream), anvil (NoxRegistry deployed by `deploy_all`),
  one `noxctl serve orchestrator`, and N `noxctl serve runner`, each registering its own
  enclave key on anvil with a simulated TDX quote;
- this process: the three KMS nodes of a 2-of-3 dealing (real KmsService gRPC servers) and
  the gateway (real gRPC server; SQLite file store, or a fresh PostgreSQL schema), all
  registered on anvil; the ingestor's key (registered) that signs the transaction messages.

The gateway's store is wrapped so the moment each task's outputs are committed is recorded
(`TimedStore.stored_at`): that is the end of a task's latency, without polling.

Every process started here is stopped when the `Network` context exits, whatever the
reason (an exception, Ctrl-C, SIGTERM turned into KeyboardInterrupt by the caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The runner suite's chain and deployment helpers (NoxRegistry on a backend, enrolment of
# every role with simulated quotes, a 2-of-3 KMS dealing): reused, not copied.
sys.path.insert(0, str(REPO / "tests" / "runner"))
sys.path.insert(0, str(REPO / "tests"))  # tagkeys, which runner_support imports

from _measure import postgres_schema  # noqa: E402
from runner_chain import ChainRegistry  # noqa: E402
from runner_support import CALLER, COMPUTE, TRANSFER, make_deployment  # noqa: E402

from attestation.providers.simulated import SimulatedTdx  # noqa: E402
from nox.attest.bootstrap import build_attestation  # noqa: E402
from nox.attest.settings import AttestationSettings  # noqa: E402
from nox.chain.anvil import AnvilProcess  # noqa: E402
from nox.chain.contracts import to_bytes20  # noqa: E402
from nox.chain.registrar import LockedDirectory  # noqa: E402
from nox.crypto.envelope import sign_envelope  # noqa: E402
from nox.crypto.replay import MemoryReplayCache  # noqa: E402
from nox.crypto.sealing import sealed_input_request  # noqa: E402
from nox.gateway.context import Deployment, GatewayContext  # noqa: E402
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint  # noqa: E402
from nox.gateway.limits import RateLimit  # noqa: E402
from nox.gateway.server import create_gateway_server  # noqa: E402
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings  # noqa: E402
from nox.gateway.tagkey import derive_tag_key  # noqa: E402
from nox.handles import result_handle, uint  # noqa: E402
from nox.kms.keys import write_public_file  # noqa: E402
from nox.kms.service import SERVICE_NAME as KMS_SERVICE  # noqa: E402
from nox.kms.service import KmsServicer  # noqa: E402
from nox.orchestrator.tasks import task_id_for  # noqa: E402
from nox.queue import QueueSettings, connect, ensure_streams  # noqa: E402
from nox.queue.server import NatsServerProcess  # noqa: E402
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server  # noqa: E402
from nox.v1 import gateway_pb2, gateway_pb2_grpc, kms_pb2_grpc, task_pb2  # noqa: E402

UINT64 = uint(64)


class NoAcl:
    """No on-chain ACL reads: what is measured is compute, not decryption."""

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return False

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return False


class TimedStore(AsyncHandleStore):
    """The gateway's store, recording when each task's outputs were first committed."""

    def __init__(self, store: HandleStore) -> None:
        super().__init__(store)
        self.stored_at: dict[bytes, float] = {}
        self.changed = asyncio.Event()

    async def publish_task(self, task_id: bytes, records: Any, *, evidence: Any = None) -> Any:
        outcome = await super().publish_task(task_id, records, evidence=evidence)
        self.stored_at.setdefault(task_id, time.perf_counter())
        self.changed.set()
        return outcome


@dataclass
class Task:
    """One signed transaction message, ready to publish."""

    task_id: bytes
    chain_id: int
    tx_hash: bytes
    envelope: bytes
    outputs: list[bytes]


@dataclass
class Network:
    """The running network; build it with `network(...)`."""

    tmp: Path
    anvil: AnvilProcess
    nats: NatsServerProcess
    queue: QueueSettings
    chain: Any
    dep: Any
    store: TimedStore
    gateway: Any
    gateway_target: str
    orchestrator: subprocess.Popen[str]
    orchestrator_target: str
    public_file: Path
    root_file: Path
    runners: list[subprocess.Popen[bytes]] = field(default_factory=list)
    runner_capacity: int = 4

    # -- runner processes ------------------------------------------------------------------

    def start_runner(self) -> None:
        """One more `python -m nox.cli serve runner` with its own operator account."""
        index = len(self.runners)
        key_file = self.tmp / f"runner-operator-{index}.key"
        key_file.write_text(self.anvil.private_keys[2 + index])
        env = {
            **os.environ,
            "NOX_RUNNER_CHAIN_RPC_URL": self.anvil.url,
            "NOX_RUNNER_REGISTRY_ADDRESS": self.chain.client.address,
            "NOX_RUNNER_COMPUTE_ADDRESS": "0x" + COMPUTE.hex(),
            "NOX_RUNNER_OPERATOR_KEY_FILE": str(key_file),
            "NOX_RUNNER_KMS_PUBLIC_FILE": str(self.public_file),
            "NOX_RUNNER_ORCHESTRATOR_ENDPOINT": self.orchestrator_target,
            "NOX_RUNNER_GATEWAY_ENDPOINT": self.gateway_target,
            "NOX_RUNNER_DANGEROUS_SIMULATED_TDX_DIR": str(self.tmp / "sim"),
            "NOX_RUNNER_CAPACITY": str(self.runner_capacity),
            "NOX_RUNNER_HEARTBEAT_SECONDS": "1",
            "NOX_RUNNER_CLAIM_WAIT_SECONDS": "1",
        }
        self.runners.append(
            subprocess.Popen(
                [sys.executable, "-m", "nox.cli", "serve", "runner"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(self.tmp / f"runner-{index}.log").open("wb"),
            )
        )

    def ensure_runners(self, count: int) -> None:
        """Exactly `count` runner processes alive (more started, the newest stopped)."""
        while len(self.runners) < count:
            self.start_runner()
        while len(self.runners) > count:
            _stop(self.runners.pop())
        self.check_alive()

    def check_alive(self) -> None:
        """Raise (with the tail of its log) if a service process has exited."""
        procs = [(f"runner-{i}", p) for i, p in enumerate(self.runners)]
        for name, proc in [*procs, ("orchestrator", self.orchestrator)]:
            if proc.poll() is not None:
                log = self.tmp / f"{name}.log"
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise RuntimeError(f"{name} process exited with {proc.returncode}:\n{tail}")

    # -- tasks -----------------------------------------------------------------------------

    async def encrypt_inputs(self, values: Sequence[int], concurrency: int = 16) -> list[bytes]:
        """One EncryptInput call per value (uint64), `concurrency` in flight."""
        gate = asyncio.Semaphore(concurrency)
        chain_id = self.chain.backend.chain_id
        info = await self.gateway.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())

        async def one(value: int) -> bytes:
            async with gate:
                answer = await self.gateway.EncryptInput(
                    sealed_input_request(
                        info.enclave_public_key,
                        value.to_bytes(8, "big"),
                        chain_id=chain_id,
                        type_code=UINT64.code,
                        owner=CALLER,
                        application=CALLER,
                    )
                )
            return bytes(answer.handle)

        return list(await asyncio.gather(*(one(v) for v in values)))

    def transfer_task(self, inputs: Sequence[bytes], block_hash: bytes) -> Task:
        """A signed one-transfer transaction (3 inputs, 3 outputs) in anvil's block 1."""
        chain_id = self.chain.backend.chain_id
        now = int(time.time())
        outputs = [
            result_handle(TRANSFER, inputs, COMPUTE, CALLER, now, i, chain_id, UINT64).to_bytes()
            for i in range(3)
        ]
        tx_hash = os.urandom(32)
        tx = task_pb2.TransactionMessage(
            chain_id=chain_id,
            block_number=1,
            block_hash=block_hash,
            block_timestamp=now,
            transaction_hash=tx_hash,
            compute_address=COMPUTE,
            operations=[
                task_pb2.Operation(
                    log_index=0,
                    operator=TRANSFER,
                    caller=CALLER,
                    input_handles=list(inputs),
                    output_handles=outputs,
                )
            ],
        )
        env = sign_envelope(
            self.dep.ingestor, tx, domain=self.chain.domain, audience=COMPUTE, now=now, ttl=3600
        )
        return Task(
            task_id_for(chain_id, tx_hash), chain_id, tx_hash, env.SerializeToString(), outputs
        )

    async def make_tasks(self, count: int) -> list[Task]:
        """`count` transfers (amount 30 of 100 to a balance of 5), inputs via EncryptInput."""
        handles = await self.encrypt_inputs([30, 100, 5] * count)
        block_hash = bytes(self.chain.backend.w3.eth.get_block(1)["hash"])
        return [self.transfer_task(handles[3 * i : 3 * i + 3], block_hash) for i in range(count)]

    async def wait_stored(self, task_ids: Sequence[bytes], seconds: float) -> None:
        """Until every task's outputs are in the gateway's store (TimeoutError after
        `seconds`)."""
        async with asyncio.timeout(seconds):
            while True:
                self.store.changed.clear()
                if all(t in self.store.stored_at for t in task_ids):
                    return
                self.check_alive()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self.store.changed.wait()


def _stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _serve(spec: ServiceSpec) -> Any:
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    return server


def _orchestrator_process(
    tmp: Path, anvil: AnvilProcess, chain: Any, nats: NatsServerProcess, gateway_target: str
) -> tuple[subprocess.Popen[str], list[str]]:
    """`python -m nox.cli serve orchestrator`; its stdout lines are collected by a thread."""
    key_file = tmp / "orchestrator-operator.key"
    key_file.write_text(anvil.private_keys[8])
    env = {
        **os.environ,
        "NOX_ORCHESTRATOR_CHAIN_RPC_URL": anvil.url,
        "NOX_ORCHESTRATOR_REGISTRY_ADDRESS": chain.client.address,
        "NOX_ORCHESTRATOR_COMPUTE_ADDRESS": "0x" + COMPUTE.hex(),
        "NOX_ORCHESTRATOR_OPERATOR_KEY_FILE": str(key_file),
        "NOX_ORCHESTRATOR_NATS_SERVERS": nats.url,
        "NOX_ORCHESTRATOR_NATS_USER": nats.user("orchestrator").user,
        "NOX_ORCHESTRATOR_NATS_PASSWORD_FILE": str(nats.user("orchestrator").password_file),
        "NOX_ORCHESTRATOR_GATEWAY_ENDPOINT": gateway_target,
        "NOX_ORCHESTRATOR_DANGEROUS_SIMULATED_TDX_DIR": str(tmp / "sim"),
        "NOX_ORCHESTRATOR_PORT": "0",
        "NOX_ORCHESTRATOR_HEARTBEAT_INTERVAL": "1",
        "NOX_ORCHESTRATOR_ACK_WAIT": "10",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "serve", "orchestrator"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp / "orchestrator.log").open("wb"),
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


async def _endpoint(proc: subprocess.Popen[str], lines: list[str], seconds: float) -> str:
    async with asyncio.timeout(seconds):
        while True:
            for line in lines:
                if line.startswith("orchestrator 0x"):
                    return line.split(" on ")[1].strip()
            if proc.poll() is not None:
                raise RuntimeError("the orchestrator process exited while starting")
            await asyncio.sleep(0.05)


def _production_refresh(chain: Any, sim: SimulatedTdx, seconds: float) -> None:
    """Give the gateway's and KMS nodes' registry view the refresh interval a deployed gateway
    has (`NOX_GATEWAY_REGISTRY_REFRESH_SECONDS`, default 5 s) instead of the test helper's 0
    (which re-reads the registry events from anvil on every check)."""
    attestation = build_attestation(AttestationSettings(), simulated=sim)
    chain.view = attestation.registry_view(chain.client, refresh_interval=seconds)
    chain.directory = LockedDirectory(chain.view, chain.lock)


@contextlib.asynccontextmanager
async def network(
    *,
    postgres_url: str | None = None,
    startup_timeout: float = 120.0,
    registry_refresh: float = 5.0,
) -> AsyncIterator[Network]:
    """Start the whole network (no runner yet: `Network.ensure_runners`); stop it on exit."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nox-bench-")))
        nats = NatsServerProcess(tmp / "nats")
        nats.start()
        stack.callback(nats.close)
        anvil = stack.enter_context(AnvilProcess())
        queue = nats.settings("ingestor")  # the bench publishes as the ingestor does
        conn = await connect(queue)
        await ensure_streams(conn)
        await conn.close()

        sim = SimulatedTdx.create(tmp / "sim")
        chain = ChainRegistry(sim, backend=anvil.backend())
        _production_refresh(chain, sim, registry_refresh)
        dep = make_deployment(registry=chain, clock=lambda: int(time.time()), domain=chain.domain)  # type: ignore[arg-type]
        if postgres_url is None:
            url = f"sqlite:///{tmp / 'gateway.sqlite3'}"
        else:
            url = stack.enter_context(postgres_schema(postgres_url))
        store = TimedStore(HandleStore.open(StoreSettings(url=url)))
        stack.push_async_callback(store.close)
        servers: list[Any] = []
        channels: list[Any] = []

        async def close_all() -> None:
            for channel in channels:
                await channel.close(None)
            for server in servers:
                await server.stop(0)

        stack.push_async_callback(close_all)
        for node in dep.kms_nodes:
            servers.append(
                await _serve(
                    ServiceSpec(
                        KMS_SERVICE,
                        kms_pb2_grpc.add_KmsServiceServicer_to_server,
                        KmsServicer(node),
                    )
                )
            )
            channels.append(create_channel(servers[-1].target))

        endpoints = [
            KmsNodeEndpoint(
                index=i, address=n.address, call=kms_pb2_grpc.KmsServiceStub(c).Delegate
            )
            for i, (n, c) in enumerate(zip(dep.kms_nodes, channels, strict=True), 1)
        ]
        ctx = GatewayContext(
            key=dep.gateway,
            deployment=Deployment(
                chain.backend.chain_id, to_bytes20(chain.client.address), COMPUTE
            ),
            store=store,
            directory=chain.directory,
            acl=NoAcl(),
            kms=KmsFanout(
                endpoints,
                key=dep.gateway,
                domain=chain.domain,
                public=dep.dealing.public,
                directory=chain.directory,
            ),
            replay=MemoryReplayCache(),
        )
        await derive_tag_key(ctx)
        gateway, _ = create_gateway_server(
            ctx,
            server_settings=ServerSettings(graceful_shutdown_seconds=0),
            rate_limit=RateLimit(rate=1e6, burst=1_000_000),
        )
        await gateway.start()
        servers.append(gateway)
        gw_channel = create_channel(gateway.target)
        channels.append(gw_channel)

        public_file = tmp / "kms-public.json"
        write_public_file(public_file, dep.dealing.public)
        root_file = tmp / "dev-root.der"
        root_file.write_bytes(sim.root_der)

        orch, lines = _orchestrator_process(tmp, anvil, chain, nats, gateway.target)
        stack.callback(_stop, orch)
        target = await _endpoint(orch, lines, startup_timeout)
        net = Network(
            tmp=tmp,
            anvil=anvil,
            nats=nats,
            queue=queue,
            chain=chain,
            dep=dep,
            store=store,
            gateway=gateway_pb2_grpc.GatewayServiceStub(gw_channel),
            gateway_target=gateway.target,
            orchestrator=orch,
            orchestrator_target=target,
            public_file=public_file,
            root_file=root_file,
        )

        def stop_runners() -> None:
            for proc in net.runners:
                if proc.poll() is None:
                    proc.terminate()
            for proc in net.runners:
                _stop(proc)

        stack.callback(stop_runners)
        yield net
