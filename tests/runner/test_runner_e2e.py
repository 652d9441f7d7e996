"""End to end through the real gateway: a user encrypts inputs (EncryptInput), the runner
agent registers itself on the embedded chain, claims the transfer, gets its operands from
the real GatewayService (which relays to three real KmsService nodes over gRPC, 2-of-3),
submits; the orchestrator double forwards the result to StoreResults as the orchestrator
does, and the gateway stores the outputs. Only the orchestrator is a double.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runner_chain import ChainRegistry, OrchestratorDouble
from runner_support import CALLER, COMPUTE, TRANSFER, assign, kms_decrypt, make_deployment

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
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.runner.agent import AgentSettings, RunnerAgent
from nox.runner.executor import ExecutorConfig, TaskExecutor
from nox.v1 import gateway_pb2, gateway_pb2_grpc, kms_pb2_grpc, orchestrator_pb2_grpc, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


class _NoAcl:
    """The ACL is not used on this path (no user decryption)."""

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return False

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return False


def _wall() -> int:
    return int(time.time())


async def _serve(spec: ServiceSpec) -> RpcServer:
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    return server


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[object, ...]]:
    chain = ChainRegistry(SimulatedTdx.generate())
    dep = make_deployment(registry=chain, clock=_wall, domain=chain.domain)  # type: ignore[arg-type]
    servers: list[RpcServer] = []
    channels = []
    for node in dep.kms_nodes:
        servicer = KmsServicer(node)
        servers.append(
            await _serve(
                ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
            )
        )
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
        acl=_NoAcl(),
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
    gateway_stub = gateway_pb2_grpc.GatewayServiceStub(create_channel(gateway.target))
    orch = OrchestratorDouble(dep.orchestrator, chain, chain.domain, _wall)
    servers.append(
        await _serve(
            ServiceSpec(
                "nox.v1.OrchestratorService",
                orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                orch,
            )
        )
    )
    orch_stub = orchestrator_pb2_grpc.OrchestratorServiceStub(create_channel(servers[-1].target))
    try:
        yield chain, dep, orch, gateway_stub, orch_stub
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()


async def test_transfer_through_the_real_gateway_and_kms(stack: tuple[object, ...]) -> None:
    chain, dep, orch, gateway_stub, orch_stub = stack
    assert isinstance(chain, ChainRegistry)
    assert isinstance(orch, OrchestratorDouble)
    gw: gateway_pb2_grpc.GatewayServiceStub = gateway_stub  # type: ignore[assignment]
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
        result_handle(
            TRANSFER, inputs, COMPUTE, CALLER, now, i, chain.backend.chain_id, vt
        ).to_bytes()
        for i in range(3)
    ]
    tx = task_pb2.TransactionMessage(
        chain_id=chain.backend.chain_id,
        block_number=1,
        block_hash=bytes(32),
        block_timestamp=now,
        transaction_hash=bytes(range(32)),
        compute_address=COMPUTE,
        operations=[
            task_pb2.Operation(
                log_index=0,
                operator=TRANSFER,
                caller=CALLER,
                input_handles=inputs,
                output_handles=outputs,
            )
        ],
    )
    orch.pending.append(lambda runner: assign(dep, tx, runner=runner, now=_wall()))  # type: ignore[arg-type]

    stored: list[gateway_pb2.StoreResultsResponse] = []

    async def forward(assignment: SignedEnvelope, result: SignedEnvelope) -> None:
        payload = gateway_pb2.StoreResultsPayload(
            task_id=task_pb2.TaskAssignment.FromString(assignment.payload).task_id,
            executions=[gateway_pb2.SignedExecution(assignment=assignment, result=result)],
        )
        env = sign_envelope(
            dep.orchestrator,
            payload,
            domain=chain.domain,  # type: ignore[attr-defined]
            audience=dep.gateway.address,
            now=_wall(),
        )  # type: ignore[attr-defined]
        stored.append(await gw.StoreResults(gateway_pb2.StoreResultsRequest(envelope=env)))

    orch.forward = forward
    key = EnclaveKey.generate()
    config = ExecutorConfig(
        domain=chain.domain,
        kms_public=dep.dealing.public,  # type: ignore[attr-defined]
        compute_address=COMPUTE,
    )
    replay = MemoryReplayCache()
    agent = RunnerAgent(
        executor=TaskExecutor(key=key, config=config, directory=chain.directory, replay=replay),
        settings=AgentSettings(
            capacity=2, claim_wait_seconds=0, heartbeat_seconds=0.2, retry_seconds=0.05
        ),
        directory=chain.directory,
        registrar=chain.registrar(key),
        quote_provider=chain.sim,
        orchestrator=orch_stub,
        gateway=gw,
        orchestrator_address=dep.orchestrator.address,  # type: ignore[attr-defined]
        gateway_address=dep.gateway.address,  # type: ignore[attr-defined]
        replay=replay,
        clock=_wall,
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(agent.run(stop))
    try:
        async with asyncio.timeout(30):
            while agent.tasks_completed < 1:  # noqa: ASYNC110 - polling the agent's counters
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await loop

    (result,) = orch.results
    values = [int.from_bytes(kms_decrypt(c, c.handle), "big") for c in result.outputs.ciphertexts]
    assert values == [70, 35, 30]
    assert len(stored) == 1
    status = await gw.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=outputs))
    assert [s.stored for s in status.statuses] == [True, True, True]
    assert {s.origin for s in status.statuses} == {gateway_pb2.HANDLE_ORIGIN_TASK}
