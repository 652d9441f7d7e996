"""The runner agent over real gRPC, against the real NoxRegistry on the embedded EVM.

Registration is real: simulated TDX quotes bound to the enclave (DESIGN §3), registered with
`registerWithPermit`, verified off-chain by `RegistryView` against the dev root. KMS nodes,
envelopes and crypto are real. The orchestrator and gateway are doubles (runner_chain).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runner_chain import DAY, WORKLOAD_ID, ChainRegistry, GatewayDouble, OrchestratorDouble
from runner_support import COMPUTE, Deployment, assign, kms_decrypt, make_deployment, transfer_task

from attestation.exceptions import ProviderError
from attestation.providers.simulated import SimulatedTdx
from attestation.verify import Verifier
from nox.chain.registrar import LockedDirectory
from nox.chain.registry import RegistryView
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import PermissionDenied
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.runner.agent import SUPPORTED_OPERATORS, AgentSettings, RunnerAgent
from nox.runner.exceptions import NodeNotReady
from nox.runner.executor import ExecutorConfig, TaskExecutor
from nox.runner.server import SERVICE_NAME, run_with_health, status_spec
from nox.v1 import (
    gateway_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
)

pytestmark = pytest.mark.integration

# RegistryView's reasons today, and the ErrorReason names of docs/api.md they should become
# (the chain layer owns them; either spelling passes).
MISSING = {"NODE_NOT_REGISTERED", "SIGNER_NOT_REGISTERED"}
EXPIRED = {"NODE_EXPIRED", "REGISTRATION_EXPIRED"}
REVOKED = {"NODE_REVOKED", "REVOKED"}
UNATTESTED = {"ATTESTATION_INVALID", "ATTESTATION_FAILED"}


@pytest.fixture(scope="module")
def sim() -> SimulatedTdx:
    return SimulatedTdx.generate()


@dataclass
class Net:
    chain: ChainRegistry
    dep: Deployment
    orch: OrchestratorDouble
    gateway: GatewayDouble
    orch_stub: orchestrator_pb2_grpc.OrchestratorServiceStub
    gateway_stub: gateway_pb2_grpc.GatewayServiceStub

    def agent(
        self,
        key: EnclaveKey,
        *,
        directory: LockedDirectory | None = None,
        quotes: object = None,
        **settings: object,
    ) -> RunnerAgent:
        chain = self.chain
        directory = directory or chain.directory
        defaults: dict[str, object] = {
            "capacity": 2,
            "claim_wait_seconds": 0,
            "heartbeat_seconds": 0.2,
            "registration_check_seconds": 0.1,
            "retry_seconds": 0.05,
        }
        defaults.update(settings)
        config = ExecutorConfig(
            domain=chain.domain, kms_public=self.dep.dealing.public, compute_address=COMPUTE
        )
        replay = MemoryReplayCache()
        executor = TaskExecutor(key=key, config=config, directory=directory, replay=replay)
        return RunnerAgent(
            executor=executor,
            settings=AgentSettings(**defaults),  # type: ignore[arg-type]
            directory=directory,
            registrar=chain.registrar(key),
            quote_provider=quotes or chain.sim,  # type: ignore[arg-type]
            orchestrator=self.orch_stub,
            gateway=self.gateway_stub,
            orchestrator_address=self.dep.orchestrator.address,
            gateway_address=self.dep.gateway.address,
            replay=replay,
            clock=chain.now,
        )

    def queue_transfer(self, *, signer: EnclaveKey | None = None) -> None:
        tx, _ = transfer_task(self.dep, 30, 100, 5)
        self.orch.pending.append(
            lambda runner: assign(self.dep, tx, runner=runner, signer=signer, now=self.chain.now())
        )


async def _serve(spec: ServiceSpec) -> RpcServer:
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    return server


@pytest.fixture
async def net(sim: SimulatedTdx) -> AsyncIterator[Net]:
    chain = ChainRegistry(sim)
    dep = make_deployment(registry=chain, clock=chain.now, domain=chain.domain)  # type: ignore[arg-type]
    orch = OrchestratorDouble(dep.orchestrator, chain, chain.domain, chain.now)
    gateway = GatewayDouble(dep, chain.now)
    servers = [
        await _serve(
            ServiceSpec(
                "nox.v1.OrchestratorService",
                orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                orch,
            )
        ),
        await _serve(
            ServiceSpec(
                "nox.v1.GatewayService",
                gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                gateway,
            )
        ),
    ]
    channels = [create_channel(s.target) for s in servers]
    try:
        yield Net(
            chain,
            dep,
            orch,
            gateway,
            orchestrator_pb2_grpc.OrchestratorServiceStub(channels[0]),
            gateway_pb2_grpc.GatewayServiceStub(channels[1]),
        )
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (the loop under test has no event to wait on) for up to 30 s."""
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110 - polling state the agent exposes
            await asyncio.sleep(0.02)
    assert condition(), what


async def _run_until(agent: RunnerAgent, condition: Callable[[], bool], what: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.create_task(agent.run(stop))
    try:
        await _until(condition, what)
    finally:
        stop.set()
        await loop


async def _direct_claim(net: Net, key: EnclaveKey) -> None:
    """A signed ClaimTasks from `key`, bypassing the agent's own readiness check."""
    executor = net.agent(key).executor
    payload = orchestrator_pb2.ClaimTasksPayload(max_tasks=1)
    envelope = executor.sign(payload, audience=net.dep.orchestrator.address, now=net.chain.now())
    await net.orch_stub.ClaimTasks(orchestrator_pb2.ClaimTasksRequest(envelope=envelope))


async def test_runner_registers_itself_then_runs_a_confidential_transfer(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key)
    net.queue_transfer()
    status_server = await _serve(status_spec(agent))
    channel = create_channel(status_server.target)
    health = health_pb2_grpc.HealthStub(channel)
    stop = asyncio.Event()
    runner = asyncio.create_task(run_with_health(agent, status_server, stop))
    try:
        await _until(lambda: bool(net.orch.results), "a result was submitted")
        await _until(lambda: agent.tasks_completed == 1, "the submission was acknowledged")
        serving = health_pb2.HealthCheckResponse.SERVING
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        async with asyncio.timeout(30):
            while (await health.Check(request)).status != serving:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        status = await runner_pb2_grpc.RunnerServiceStub(channel).GetRunnerStatus(
            runner_pb2.GetRunnerStatusRequest()
        )
    finally:
        stop.set()
        await runner
        await channel.close(None)
        await status_server.stop(0)

    (result,) = net.orch.results
    assert net.orch.result_signers == [key.address]
    values = [int.from_bytes(kms_decrypt(c, c.handle), "big") for c in result.outputs.ciphertexts]
    assert values == [70, 35, 30]
    beat = net.orch.heartbeats[0]
    assert (beat.capacity, list(beat.supported_operators)) == (2, list(range(19)))
    assert list(SUPPORTED_OPERATORS) == list(range(19))
    # registered on-chain by the agent itself, with its quote's workload id
    assert status.node.enclave_address == key.address
    assert status.node.registration_expires_at == net.chain.expires_at(key.address)
    assert status.node.workload_id == WORKLOAD_ID
    assert status.node.ready
    assert status.orchestrator_connected
    assert (status.tasks_completed, status.tasks_failed, status.in_flight) == (1, 0, 0)
    assert status.capacity == 2


async def test_unregistered_runner_gets_no_task(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key, auto_register=False)  # an operator was supposed to register it
    net.queue_transfer()
    checks = 0

    def counted() -> bool:
        nonlocal checks
        checks += 1
        return checks > 20 and agent.not_ready_reason != "NOT_CHECKED"

    await _run_until(agent, counted, "the agent ran its loop")
    assert not agent.ready
    assert agent.not_ready_reason in MISSING
    assert (net.orch.claims, net.orch.heartbeats, net.orch.results) == (0, [], [])
    assert len(net.orch.pending) == 1
    with pytest.raises(NodeNotReady):
        await agent.claim(1)
    # and the orchestrator's own registry check refuses it anyway
    with pytest.raises(PermissionDenied):
        await _direct_claim(net, key)
    assert len(net.orch.refused) == 1
    assert net.orch.refused[0] in MISSING


async def test_expired_registration_gets_no_task(net: Net) -> None:
    key = EnclaveKey.generate()
    net.chain.register(key, 2)  # registered by the operator, 24 h validity
    agent = net.agent(key, auto_register=False)
    assert await agent.ensure_registered()
    net.chain.advance(DAY + 60)
    assert not await agent.ensure_registered()
    assert agent.not_ready_reason in EXPIRED
    with pytest.raises(NodeNotReady):
        await agent.claim(1)
    with pytest.raises(PermissionDenied):
        await _direct_claim(net, key)
    assert len(net.orch.refused) == 1
    assert net.orch.refused[0] in EXPIRED


async def test_revoked_runner_gets_no_task_and_cannot_reregister(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key)
    assert await agent.ensure_registered()
    net.chain.revoke(key.address)
    assert not await agent.ensure_registered()
    assert agent.not_ready_reason in REVOKED
    net.queue_transfer()
    with pytest.raises(NodeNotReady):
        await agent.claim(1)
    with pytest.raises(PermissionDenied):
        await _direct_claim(net, key)
    assert len(net.orch.refused) == 1
    assert net.orch.refused[0] in REVOKED
    assert net.orch.claims == 0


async def test_runner_reregisters_before_its_registration_expires(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key, reregister_margin_seconds=3600)
    assert await agent.ensure_registered()
    first = net.chain.expires_at(key.address)
    assert await agent.ensure_registered()
    assert net.chain.expires_at(key.address) == first  # far from expiry: nothing to do
    net.chain.advance(DAY - 1800)  # within the margin
    assert await agent.ensure_registered()
    renewed = net.chain.expires_at(key.address)
    assert renewed > first
    assert agent.status().node.registration_expires_at == renewed


async def test_task_signed_by_a_non_orchestrator_is_refused(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key)
    net.queue_transfer(signer=net.dep.gateway)  # registered on-chain, but as a gateway
    net.queue_transfer(signer=EnclaveKey.generate())  # not registered at all
    net.queue_transfer()  # the real orchestrator's
    await _run_until(
        agent, lambda: agent.tasks_refused == 2 and len(net.orch.results) == 1, "tasks handled"
    )
    assert net.gateway.calls == 1  # refused tasks never reached the gateway
    assert agent.tasks_completed == 1
    assert agent.tasks_failed == 0


async def test_several_tasks_in_flight_up_to_capacity(net: Net) -> None:
    key = EnclaveKey.generate()
    agent = net.agent(key, capacity=2)
    net.gateway.in_flight_probe = lambda: agent.in_flight
    for _ in range(5):
        net.queue_transfer()
    await _run_until(agent, lambda: agent.tasks_completed == 5, "every task completed")
    assert len(net.orch.results) == 5
    assert net.gateway.max_in_flight_seen >= 1
    assert net.gateway.max_in_flight_seen <= 2  # capacity 2 bounds tasks in flight
    assert {b.capacity for b in net.orch.heartbeats} == {2}


async def test_runner_whose_quote_does_not_verify_is_not_ready(net: Net) -> None:
    """Registered on-chain, but the relying parties' DCAP check (here: trusting another
    deployment's dev root) rejects its quote: it counts as unregistered and takes no work."""
    other_root = Verifier([SimulatedTdx.generate().root_der])
    chain = net.chain

    def verify(quote: bytes, now: int) -> None:
        other_root.verify(quote, chain.sim.collateral(now=now), now=now)

    strict = LockedDirectory(RegistryView(chain.client, verifier=verify), chain.lock)
    key = EnclaveKey.generate()
    agent = net.agent(key, directory=strict)
    assert not await agent.ensure_registered()
    assert agent.not_ready_reason in UNATTESTED
    assert chain.expires_at(key.address) > chain.now()  # the registration itself exists
    with pytest.raises(NodeNotReady):
        await agent.claim(1)


async def test_a_failing_quote_provider_leaves_the_runner_not_ready(net: Net) -> None:
    class Broken:
        def quote(self, report_data: bytes) -> bytes:
            raise ProviderError("configfs", "TSM report generation failed")

    agent = net.agent(EnclaveKey.generate(), quotes=Broken())
    await _run_until(agent, lambda: agent.not_ready_reason == "ATTESTATION_FAILED", "checked")
    assert not agent.ready
    assert net.orch.claims == 0
