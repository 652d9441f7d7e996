"""The real pieces together: orchestrator + real RunnerAgents + real GatewayService + three
real KmsService nodes (2-of-3) + real NoxRegistry (embedded EVM, simulated TDX) + NATS.

A runner freezes in the middle of a task (its operand fetch never returns and it stops
heartbeating, as a SIGKILLed process would look from outside); the orchestrator declares it
lost, the task completes on another runner and its outputs are stored once, with the right
values. The stack is built from the runner suite's helpers (tests/runner).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from natsfix import open_queue

sys.path.append(str(Path(__file__).resolve().parent.parent / "runner"))

from orch_stack import ChainDirectory, NoAcl, Recording
from runner_chain import ChainRegistry
from runner_support import CALLER, COMPUTE, TRANSFER, kms_decrypt, make_deployment

from attestation.providers.simulated import SimulatedTdx
from nox.chain.contracts import to_bytes20
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.handles import result_handle, uint
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.orchestrator import GrpcGatewayStore, OrchestratorNode, OrchestratorSettings
from nox.orchestrator.tasks import task_id_for
from nox.queue import QueueSettings, publish_transaction
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.runner.agent import AgentSettings, RunnerAgent
from nox.runner.executor import ExecutorConfig, TaskExecutor
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


class _FrozenGateway:
    """A gateway stub whose GetOperands never answers (the runner freezes mid-task)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.entered = asyncio.Event()

    async def GetOperands(self, request: Any, **kw: Any) -> Any:
        self.entered.set()
        await asyncio.Event().wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _wall() -> int:
    return int(time.time())


@pytest.fixture
async def stack(tmp_path: Path, queue_settings: QueueSettings) -> AsyncIterator[dict[str, Any]]:
    chain = ChainRegistry(SimulatedTdx.generate())
    dep = make_deployment(registry=chain, clock=_wall, domain=chain.domain)  # type: ignore[arg-type]
    servers: list[Any] = []
    channels: list[Any] = []
    for node in dep.kms_nodes:
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server,
                           KmsServicer(node))  # fmt: skip
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channels.append(create_channel(server.target))
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
    gw_channel = create_channel(gateway.target)
    channels.append(gw_channel)
    directory = ChainDirectory(chain)
    orch = OrchestratorNode(
        key=dep.orchestrator,
        deployment=common_pb2.Deployment(
            chain_id=chain.backend.chain_id,
            registry_address=to_bytes20(chain.client.address),
            compute_address=COMPUTE,
        ),
        queue=queue_settings,
        directory=directory,
        gateway=Recording(
            GrpcGatewayStore(
                gw_channel,
                key=dep.orchestrator,
                domain=chain.domain,
                gateway_address=dep.gateway.address,
                directory=directory,
                clock=time.time,
            )
        ),
        settings=OrchestratorSettings(
            lease_seconds=20,
            heartbeat_interval=1,
            runner_lost_after=2.0,
            tick_interval=0.1,
            fetch_wait=0.5,
            registry_sweep_interval=1.0,
        ),
    )
    await orch.start()
    orch_channel = create_channel(orch.target)
    channels.append(orch_channel)
    try:
        yield {
            "chain": chain, "dep": dep, "orch": orch, "queue": queue_settings,
            "gateway": gateway_pb2_grpc.GatewayServiceStub(gw_channel),
            "orch_stub": orchestrator_pb2_grpc.OrchestratorServiceStub(orch_channel),
        }  # fmt: skip
    finally:
        await orch.stop()
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()


def _agent(stack: dict[str, Any], gateway: Any) -> RunnerAgent:
    chain, dep = stack["chain"], stack["dep"]
    key = EnclaveKey.generate()
    config = ExecutorConfig(domain=chain.domain, kms_public=dep.dealing.public,
                            compute_address=COMPUTE)  # fmt: skip
    replay = MemoryReplayCache()
    return RunnerAgent(
        executor=TaskExecutor(key=key, config=config, directory=chain.directory, replay=replay),
        settings=AgentSettings(
            capacity=2, claim_wait_seconds=1, heartbeat_seconds=0.5, retry_seconds=0.05
        ),
        directory=chain.directory,
        registrar=chain.registrar(key),
        quote_provider=chain.sim,
        orchestrator=stack["orch_stub"],
        gateway=gateway,
        orchestrator_address=dep.orchestrator.address,
        gateway_address=dep.gateway.address,
        replay=replay,
        clock=_wall,
    )


async def test_frozen_runner_task_completes_on_another_runner(stack: dict[str, Any]) -> None:
    chain, dep, orch = stack["chain"], stack["dep"], stack["orch"]
    gw = stack["gateway"]
    vt = uint(64)
    inputs = []
    info = await gw.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
    for value in (30, 100, 5):
        answer = await gw.EncryptInput(
            sealed_input_request(
                info.enclave_public_key, value.to_bytes(8, "big"),
                chain_id=chain.backend.chain_id, type_code=vt.code, owner=CALLER,
                application=CALLER,
            )
        )  # fmt: skip
        inputs.append(bytes(answer.handle))
    now = _wall()
    outputs = [
        result_handle(TRANSFER, inputs, COMPUTE, CALLER, now, i, chain.backend.chain_id, vt)
        .to_bytes()
        for i in range(3)
    ]  # fmt: skip
    tx = task_pb2.TransactionMessage(
        chain_id=chain.backend.chain_id, block_number=1, block_hash=bytes(32),
        block_timestamp=now, transaction_hash=bytes(range(32)), compute_address=COMPUTE,
        operations=[task_pb2.Operation(log_index=0, operator=TRANSFER, caller=CALLER,
                                       input_handles=inputs, output_handles=outputs)],
    )  # fmt: skip
    env = sign_envelope(dep.ingestor, tx, domain=chain.domain, audience=COMPUTE, now=now, ttl=3600)
    task_id = task_id_for(tx.chain_id, tx.transaction_hash)
    stops: list[asyncio.Event] = []
    loops: list[asyncio.Task[None]] = []
    async with open_queue(stack["queue"]) as conn:
        await publish_transaction(conn, tx.chain_id, tx.transaction_hash, env.SerializeToString())
        frozen_gw = _FrozenGateway(gw)
        frozen = _agent(stack, frozen_gw)
        stops.append(asyncio.Event())
        loops.append(asyncio.create_task(frozen.run(stops[-1])))
        try:
            async with asyncio.timeout(60):
                await frozen_gw.entered.wait()  # the first runner is in the middle of it
                loops[0].cancel()  # ... and stops dead: no heartbeat, no result
                healthy = _agent(stack, gw)
                stops.append(asyncio.Event())
                loops.append(asyncio.create_task(healthy.run(stops[-1])))
                while healthy.tasks_completed < 1:  # noqa: ASYNC110 - polling the agent
                    await asyncio.sleep(0.05)
        finally:
            for stop in stops:
                stop.set()
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            for t in list(frozen._tasks.values()):
                t.cancel()
        status = orch.scheduler.status(task_id)
        assert status.state == S.TASK_STATE_STORED
        assert status.attempts == 2
        assert list(status.runner_addresses) == [healthy.address]
        info = await conn.js.consumer_info(stack["queue"].stream, stack["queue"].durable)
        assert info.num_ack_pending == 0
        assert info.num_pending == 0
    handles = await gw.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=outputs))
    assert [s.stored for s in handles.statuses] == [True, True, True]
    # one execution forwarded, by the healthy runner, with the transfer's values
    [execution] = orch.gateway.forwarded
    result = orchestrator_pb2.SubmitResultPayload.FromString(execution.result.payload).result
    assert task_pb2.TaskAssignment.FromString(execution.assignment.payload).runner_address == (
        healthy.address
    )
    values = [int.from_bytes(kms_decrypt(c, c.handle), "big") for c in result.outputs.ciphertexts]
    assert values == [70, 35, 30]
