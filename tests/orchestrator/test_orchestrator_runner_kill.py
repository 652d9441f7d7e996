"""Real runner processes (`noxctl serve runner`), one SIGKILLed in the middle of a task.

Chain: anvil (shared by this process and the runner processes) with NoxRegistry; the KMS
nodes (2-of-3), the gateway and the orchestrator run in this process on real gRPC servers;
each runner is its own OS process that registers itself with a simulated TDX quote. The
first runner's operand fetch is held at a gateway proxy (so it is provably mid-task), then
the process is killed with SIGKILL; the task completes on a second runner process and its
outputs are stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from natsfix import open_queue

sys.path.append(str(Path(__file__).resolve().parent.parent / "runner"))

from orch_stack import ChainDirectory, NoAcl, Recording
from runner_chain import ChainRegistry
from runner_support import CALLER, COMPUTE, TRANSFER, make_deployment

from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.contracts import to_bytes20
from nox.crypto.envelope import sign_envelope
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.errors import NoxError
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.handles import result_handle, uint
from nox.kms.keys import write_public_file
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.orchestrator import GrpcGatewayStore, OrchestratorNode, OrchestratorSettings
from nox.orchestrator.tasks import task_id_for
from nox.queue import NatsServerProcess, QueueSettings, publish_transaction
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    kms_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    task_pb2,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
S = task_pb2.TaskState
REPO = Path(__file__).resolve().parents[2]


class GatewayProxy(gateway_pb2_grpc.GatewayServiceServicer):
    """Forwards the runner's calls to the real gateway; the first GetOperands is held."""

    def __init__(self, target: str) -> None:
        self.channel = create_channel(target)
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)
        self.held = asyncio.Event()
        self.calls = 0
        self.stores = 0

    async def GetGatewayInfo(self, request: Any, context: Any) -> Any:
        return await self.stub.GetGatewayInfo(request)

    async def GetTagKey(self, request: Any, context: Any) -> Any:
        return await self.stub.GetTagKey(request)

    async def StoreResults(self, request: Any, context: Any) -> Any:
        self.stores += 1
        return await self.stub.StoreResults(request)

    async def GetOperands(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.held.set()
            await asyncio.Event().wait()  # the first runner never gets its operands
        return await self.stub.GetOperands(request)


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


def _wall() -> int:
    return int(time.time())


async def _serve(spec: ServiceSpec) -> Any:
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    return server


@pytest.fixture
async def stack(
    tmp_path: Path,
    queue_settings: QueueSettings,
    anvil: AnvilProcess,
    nats_server: NatsServerProcess,
) -> AsyncIterator[dict[str, Any]]:
    sim = SimulatedTdx.create(tmp_path / "sim")
    chain = ChainRegistry(sim, backend=anvil.backend())
    dep = make_deployment(registry=chain, clock=_wall, domain=chain.domain)  # type: ignore[arg-type]
    servers: list[Any] = []
    channels: list[Any] = []
    for node in dep.kms_nodes:
        servers.append(
            await _serve(
                ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server,
                            KmsServicer(node))
            )
        )  # fmt: skip
        channels.append(create_channel(servers[-1].target))
    store = AsyncHandleStore(
        HandleStore.open(StoreSettings(url=f"sqlite:///{tmp_path / 'gateway.sqlite3'}"))
    )
    endpoints = [
        KmsNodeEndpoint(index=i, address=n.address, call=kms_pb2_grpc.KmsServiceStub(c).Delegate)
        for i, (n, c) in enumerate(zip(dep.kms_nodes, channels, strict=True), 1)
    ]
    ctx = GatewayContext(
        key=dep.gateway,
        deployment=Deployment(chain.backend.chain_id, to_bytes20(chain.client.address), COMPUTE),
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
        rate_limit=RateLimit(rate=1000.0, burst=1000),
    )
    await gateway.start()
    servers.append(gateway)
    proxy = GatewayProxy(gateway.target)
    servers.append(
        await _serve(
            ServiceSpec(
                "nox.v1.GatewayService", gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                proxy,
            )
        )
    )  # fmt: skip
    gw_channel = create_channel(gateway.target)
    channels += [gw_channel, proxy.channel]
    directory = ChainDirectory(chain)
    recording = Recording(
        GrpcGatewayStore(
            gw_channel,
            key=dep.orchestrator,
            domain=chain.domain,
            gateway_address=dep.gateway.address,
            directory=directory,
            clock=time.time,
        )
    )
    orch = OrchestratorNode(
        key=dep.orchestrator,
        deployment=common_pb2.Deployment(
            chain_id=chain.backend.chain_id,
            registry_address=to_bytes20(chain.client.address),
            compute_address=COMPUTE,
        ),
        queue=queue_settings,
        directory=directory,
        gateway=recording,
        settings=OrchestratorSettings(
            lease_seconds=60,
            heartbeat_interval=1,
            runner_lost_after=3.0,
            tick_interval=0.1,
            fetch_wait=0.5,
            registry_sweep_interval=2.0,
        ),
    )
    await orch.start()
    public_file = tmp_path / "kms-public.json"
    write_public_file(public_file, dep.dealing.public)
    root_file = tmp_path / "dev-root.der"
    root_file.write_bytes(sim.root_der)
    try:
        yield {
            "chain": chain,
            "dep": dep,
            "orch": orch,
            "queue": queue_settings,
            "nats": nats_server,
            "gateway": gateway_pb2_grpc.GatewayServiceStub(gw_channel),
            "gateway_target": gateway.target,
            "proxy": proxy,
            "proxy_target": servers[-1].target,
            "anvil": anvil,
            "sim_dir": tmp_path / "sim",
            "public_file": public_file,
            "root_file": root_file,
            "tmp": tmp_path,
        }
    finally:
        await orch.stop()
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()


@contextlib.contextmanager
def runner_process(stack: dict[str, Any], index: int, gateway: str) -> Iterator[Any]:
    """`python -m nox.cli serve runner` with its own operator account."""
    key_file = stack["tmp"] / f"operator-{index}.key"
    key_file.write_text(stack["anvil"].private_keys[2 + index])
    env = {
        **os.environ,
        "NOX_RUNNER_CHAIN_RPC_URL": stack["anvil"].url,
        "NOX_RUNNER_REGISTRY_ADDRESS": stack["chain"].client.address,
        "NOX_RUNNER_COMPUTE_ADDRESS": "0x" + COMPUTE.hex(),
        "NOX_RUNNER_OPERATOR_KEY_FILE": str(key_file),
        "NOX_RUNNER_KMS_PUBLIC_FILE": str(stack["public_file"]),
        "NOX_RUNNER_ORCHESTRATOR_ENDPOINT": stack["orch"].target,
        "NOX_RUNNER_GATEWAY_ENDPOINT": gateway,
        "NOX_RUNNER_DANGEROUS_SIMULATED_TDX_DIR": str(stack["sim_dir"]),
        "NOX_RUNNER_CAPACITY": "2",
        "NOX_RUNNER_HEARTBEAT_SECONDS": "0.5",
        "NOX_RUNNER_CLAIM_WAIT_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "serve", "runner"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _transfer(
    stack: dict[str, Any], block_hash: bytes = bytes(32)
) -> tuple[task_pb2.TransactionMessage, Any, bytes, list[bytes]]:
    """A signed one-transfer transaction over three fresh inputs (30 of 100 to 5)."""
    chain, dep, gw = stack["chain"], stack["dep"], stack["gateway"]
    vt = uint(64)
    inputs = []
    info = await gw.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
    for value in (30, 100, 5):
        answer = await gw.EncryptInput(
            sealed_input_request(
                info.enclave_public_key,
                value.to_bytes(8, "big"),
                chain_id=chain.backend.chain_id,
                type_code=vt.code,
                owner=CALLER,
                application=CALLER,
            )
        )
        inputs.append(bytes(answer.handle))
    now = _wall()
    outputs = [
        result_handle(TRANSFER, inputs, COMPUTE, CALLER, now, i, chain.backend.chain_id, vt)
        .to_bytes()
        for i in range(3)
    ]  # fmt: skip
    tx = task_pb2.TransactionMessage(
        chain_id=chain.backend.chain_id,
        block_number=1,
        block_hash=block_hash,
        block_timestamp=now,
        transaction_hash=bytes(range(32)),
        compute_address=COMPUTE,
        operations=[
            task_pb2.Operation(
                log_index=0, operator=TRANSFER, caller=CALLER, input_handles=inputs,
                output_handles=outputs,
            )
        ],
    )  # fmt: skip
    env = sign_envelope(dep.ingestor, tx, domain=chain.domain, audience=COMPUTE, now=now, ttl=3600)
    return tx, env, task_id_for(tx.chain_id, tx.transaction_hash), outputs


async def test_runner_process_sigkilled_mid_task(stack: dict[str, Any]) -> None:
    orch, gw = stack["orch"], stack["gateway"]
    tx, env, task_id, outputs = await _transfer(stack)
    async with open_queue(stack["queue"]) as conn:
        await publish_transaction(conn, tx.chain_id, tx.transaction_hash, env.SerializeToString())
        with runner_process(stack, 0, stack["proxy_target"]) as victim:
            async with asyncio.timeout(120):
                await stack["proxy"].held.wait()  # the victim is fetching its operands
            victim_runner = orch.scheduler.status(task_id).runner_addresses[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        with runner_process(stack, 1, stack["gateway_target"]):
            async with asyncio.timeout(120):
                while orch.scheduler.status(task_id).state != S.TASK_STATE_STORED:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        status = orch.scheduler.status(task_id)
        assert status.attempts == 2
        assert bytes(status.runner_addresses[0]) != bytes(victim_runner)
        info = await conn.js.consumer_info(stack["queue"].stream, stack["queue"].durable)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    [execution] = orch.gateway.forwarded  # stored once, by the second runner
    assert task_pb2.TaskAssignment.FromString(execution.assignment.payload).attempt == 2
    handles = await gw.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=outputs))
    assert [s.stored for s in handles.statuses] == [True, True, True]


@contextlib.contextmanager
def orchestrator_process(stack: dict[str, Any], index: int) -> Iterator[tuple[Any, list[str]]]:
    """`python -m nox.cli serve orchestrator`; its first stdout line names its endpoint."""
    key_file = stack["tmp"] / f"orch-operator-{index}.key"
    key_file.write_text(stack["anvil"].private_keys[5 + index])
    env = {
        **os.environ,
        "NOX_ORCHESTRATOR_CHAIN_RPC_URL": stack["anvil"].url,
        "NOX_ORCHESTRATOR_REGISTRY_ADDRESS": stack["chain"].client.address,
        "NOX_ORCHESTRATOR_COMPUTE_ADDRESS": "0x" + COMPUTE.hex(),
        "NOX_ORCHESTRATOR_OPERATOR_KEY_FILE": str(key_file),
        "NOX_ORCHESTRATOR_NATS_SERVERS": stack["queue"].servers[0],
        "NOX_ORCHESTRATOR_NATS_USER": stack["nats"].user("orchestrator").user,
        "NOX_ORCHESTRATOR_NATS_PASSWORD_FILE": str(
            stack["nats"].user("orchestrator").password_file
        ),
        "NOX_ORCHESTRATOR_GATEWAY_ENDPOINT": stack["proxy_target"],
        "NOX_ORCHESTRATOR_DANGEROUS_SIMULATED_TDX_DIR": str(stack["sim_dir"]),
        "NOX_ORCHESTRATOR_PORT": "0",
        "NOX_ORCHESTRATOR_HEARTBEAT_INTERVAL": "1",
        "NOX_ORCHESTRATOR_ACK_WAIT": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "serve", "orchestrator"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _endpoint(proc: Any, lines: list[str]) -> str:
    async with asyncio.timeout(60):
        while True:
            for line in lines:
                if line.startswith("orchestrator 0x"):
                    return line.split(" on ")[1].strip()
            assert proc.poll() is None, "orchestrator process died"
            await asyncio.sleep(0.05)


async def _task_state(target: str, task_id: bytes) -> int:
    channel = create_channel(target)
    try:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        answer = await stub.GetTaskStatus(orchestrator_pb2.GetTaskStatusRequest(task_id=task_id))
        return int(answer.status.state)
    except NoxError:
        return 0
    finally:
        await channel.close(None)


async def test_orchestrator_process_sigkilled_another_finishes(stack: dict[str, Any]) -> None:
    """Two `serve orchestrator` processes, each with a `serve runner` process; the one whose
    runner is mid-task is SIGKILLed and the other instance finishes the task."""
    w3 = stack["chain"].backend.w3
    block_hash = bytes(w3.eth.get_block(1)["hash"])  # the orchestrators check canonicality
    tx, env, task_id, outputs = await _transfer(stack, block_hash)
    async with open_queue(stack["queue"]) as conn:
        await publish_transaction(conn, tx.chain_id, tx.transaction_hash, env.SerializeToString())
        with orchestrator_process(stack, 0) as (doomed, doomed_lines):
            doomed_target = await _endpoint(doomed, doomed_lines)
            stack["orch"] = type("Endpoint", (), {"target": doomed_target})
            with runner_process(stack, 2, stack["proxy_target"]):
                async with asyncio.timeout(120):
                    await stack["proxy"].held.wait()  # instance 1's runner is mid-task
                assert await _task_state(doomed_target, task_id) == S.TASK_STATE_ASSIGNED
                doomed.send_signal(signal.SIGKILL)
                doomed.wait(timeout=10)
        with orchestrator_process(stack, 1) as (survivor, survivor_lines):
            target = await _endpoint(survivor, survivor_lines)
            stack["orch"] = type("Endpoint", (), {"target": target})
            with runner_process(stack, 3, stack["gateway_target"]):
                async with asyncio.timeout(120):
                    while await _task_state(target, task_id) != S.TASK_STATE_STORED:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
        info = await conn.js.consumer_info(stack["queue"].stream, stack["queue"].durable)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    assert stack["proxy"].stores == 1  # StoreResults once, from the surviving instance
    gw = stack["gateway"]
    handles = await gw.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=outputs))
    assert [s.stored for s in handles.statuses] == [True, True, True]
