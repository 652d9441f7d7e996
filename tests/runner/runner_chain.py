"""The real NoxRegistry on the embedded EVM, and the two service doubles the agent talks to.

`ChainRegistry` deploys the contracts, allowlists the simulated TDX workload for every role,
registers enclaves with quotes bound as DESIGN §3 says, and checks peers through the real
`RegistryView` (with off-chain DCAP verification of the simulated quotes against the
deployment's dev root). It has the `require`/`enrol` shape of `runner_support.FakeRegistry`,
so the same deployment helpers work on it.

The orchestrator and gateway doubles are what the agent tests do not test (nobody writes
the orchestrator yet; the gateway's own tests cover it): they check the runner's envelopes
against that registry and answer signed, as the real services do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from eth_account.signers.local import LocalAccount
from runner_support import Deployment, serve_operands, serve_tag_key

from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import ChainBackend, EmbeddedChain
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.chain.deploy import deploy_all
from nox.chain.registrar import ChainRegistrar, LockedDirectory, SelfRegistration
from nox.chain.registry import RegistryView
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import NoxError
from nox.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    task_pb2,
)
from nox.v1.envelope_pb2 import SignedEnvelope

WORKLOAD_ID = Measurements(mr_td=DEFAULT_MR_TD).workload_id
DAY = 86_400
RUNNER = 2


class ChainRegistry:
    """NoxRegistry on a fresh embedded chain, used through a lock (py-evm is not
    thread-safe and the runner checks from worker threads)."""

    def __init__(self, sim: SimulatedTdx, backend: ChainBackend | None = None) -> None:
        self.sim = sim
        self.lock = threading.Lock()
        self.backend = backend if backend is not None else EmbeddedChain()
        deployment = deploy_all(self.backend)
        self.client = RegistryClient(self.backend, deployment.registry)
        self.owner = self.backend.deployer
        self.operator: LocalAccount = self.backend.accounts[1]
        for role in (1, 2, 3, 4, 5):
            self.client.allow_workload(role, WORKLOAD_ID, self.owner)
        self.attestation = build_attestation(AttestationSettings(), simulated=sim)
        self.view: RegistryView = self.attestation.registry_view(self.client, refresh_interval=0.0)
        self.directory = LockedDirectory(self.view, self.lock)
        self.domain = Domain(
            chain_id=self.backend.chain_id, verifying_contract=to_bytes20(self.client.address)
        )

    # the FakeRegistry shape
    def require(self, address: bytes, role: int, now: int) -> object:
        return self.directory.require(address, role, now)

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        return self.directory.require_producer(address, role, now)

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.register(key, role)
        return key

    def register(self, key: EnclaveKey, role: int, endpoint: str = "") -> None:
        """Register `key` once, through the registrar every service uses."""
        SelfRegistration(
            self.registrar(key),
            enclave=key.address,
            role=role,
            endpoint=endpoint,
            quote=self.sim.quote,
            clock=self.backend.now,
        ).register_now()

    def registrar(self, key: EnclaveKey) -> ChainRegistrar:
        return ChainRegistrar(self.client, enclave=key, operator=self.operator, lock=self.lock)

    def now(self) -> int:
        with self.lock:
            return self.backend.now()

    def advance(self, seconds: int) -> None:
        with self.lock:
            self.backend.advance_time(seconds)

    def revoke(self, address: bytes) -> None:
        with self.lock:
            self.client.revoke_enclave(address, self.owner)

    def expires_at(self, address: bytes) -> int:
        with self.lock:
            record = self.client.node(address)
        assert record is not None
        return record.expires_at


AssignmentFactory = Callable[[bytes], SignedEnvelope]


@dataclass
class OrchestratorDouble(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Leases queued assignments to registered runners; records everything it sees."""

    key: EnclaveKey
    directory: ChainRegistry
    domain: Domain
    clock: Callable[[], int]
    pending: list[AssignmentFactory] = field(default_factory=list)
    heartbeats: list[orchestrator_pb2.HeartbeatPayload] = field(default_factory=list)
    claims: int = 0
    refused: list[str] = field(default_factory=list)
    results: list[task_pb2.TaskResult] = field(default_factory=list)
    result_signers: list[bytes] = field(default_factory=list)
    replay: MemoryReplayCache = field(default_factory=MemoryReplayCache)
    assigned: dict[bytes, SignedEnvelope] = field(default_factory=dict)
    # Called with (assignment envelope, runner's SubmitResult envelope) before answering,
    # e.g. to forward the result to a gateway's StoreResults as the orchestrator does.
    forward: Callable[[SignedEnvelope, SignedEnvelope], Awaitable[None]] | None = None

    def _open(self, env: SignedEnvelope, payload_type: type) -> object:
        now = self.clock()
        try:
            return verify_envelope(
                env,
                payload_type,
                domain=self.domain,
                audience=self.key.address,
                now=now,
                replay=self.replay,
                authorize=lambda s: self.directory.require(s, RUNNER, now),  # type: ignore[arg-type,return-value]
            )
        except NoxError as exc:
            self.refused.append(exc.reason)
            raise

    def _sign(self, payload: object, audience: bytes) -> SignedEnvelope:
        return sign_envelope(
            self.key,
            payload,
            domain=self.domain,
            audience=audience,  # type: ignore[arg-type]
            now=self.clock(),
        )

    async def GetOrchestratorInfo(
        self, request: object, context: grpc.aio.ServicerContext[object, object]
    ) -> orchestrator_pb2.GetOrchestratorInfoResponse:
        node = common_pb2.NodeInfo(enclave_address=self.key.address, role=1, ready=True)
        return orchestrator_pb2.GetOrchestratorInfoResponse(
            node=node, heartbeat_interval_seconds=1, lease_seconds=60
        )

    async def Heartbeat(
        self, request: orchestrator_pb2.HeartbeatRequest, context: object
    ) -> orchestrator_pb2.HeartbeatResponse:
        verified = await asyncio.to_thread(
            self._open, request.envelope, orchestrator_pb2.HeartbeatPayload
        )
        self.heartbeats.append(verified.message)  # type: ignore[attr-defined]
        payload = orchestrator_pb2.HeartbeatResponsePayload(
            request_hash=keccak256(request.envelope.payload), heartbeat_interval_seconds=1
        )
        return orchestrator_pb2.HeartbeatResponse(envelope=self._sign(payload, verified.signer))  # type: ignore[attr-defined]

    async def ClaimTasks(
        self, request: orchestrator_pb2.ClaimTasksRequest, context: object
    ) -> orchestrator_pb2.ClaimTasksResponse:
        verified = await asyncio.to_thread(
            self._open, request.envelope, orchestrator_pb2.ClaimTasksPayload
        )
        self.claims += 1
        runner: bytes = verified.signer  # type: ignore[attr-defined]
        count = verified.message.max_tasks  # type: ignore[attr-defined]
        taken, self.pending = self.pending[:count], self.pending[count:]
        if not taken:
            await asyncio.sleep(0.05)  # a short long-poll
        assignments = [await asyncio.to_thread(make, runner) for make in taken]
        for env in assignments:
            self.assigned[task_pb2.TaskAssignment.FromString(env.payload).task_id] = env
        payload = orchestrator_pb2.ClaimTasksResponsePayload(
            request_hash=keccak256(request.envelope.payload), assignments=assignments
        )
        return orchestrator_pb2.ClaimTasksResponse(envelope=self._sign(payload, runner))

    async def SubmitResult(
        self, request: orchestrator_pb2.SubmitResultRequest, context: object
    ) -> orchestrator_pb2.SubmitResultResponse:
        verified = await asyncio.to_thread(
            self._open, request.envelope, orchestrator_pb2.SubmitResultPayload
        )
        result = verified.message.result  # type: ignore[attr-defined]
        if self.forward is not None and result.HasField("outputs"):
            await self.forward(self.assigned[result.task_id], request.envelope)
        self.results.append(result)
        self.result_signers.append(verified.signer)  # type: ignore[attr-defined]
        state = (
            task_pb2.TASK_STATE_STORED if result.HasField("outputs") else task_pb2.TASK_STATE_FAILED
        )
        payload = orchestrator_pb2.SubmitResultResponsePayload(
            request_hash=keccak256(request.envelope.payload), task_id=result.task_id, state=state
        )
        return orchestrator_pb2.SubmitResultResponse(envelope=self._sign(payload, verified.signer))  # type: ignore[attr-defined]


@dataclass
class GatewayDouble(gateway_pb2_grpc.GatewayServiceServicer):
    """GetOperands over gRPC: `runner_support.serve_operands` against real KMS nodes."""

    dep: Deployment
    clock: Callable[[], int]
    calls: int = 0
    max_in_flight_seen: int = 0
    in_flight_probe: Callable[[], int] | None = None

    async def GetGatewayInfo(
        self, request: object, context: object
    ) -> gateway_pb2.GetGatewayInfoResponse:
        node = common_pb2.NodeInfo(enclave_address=self.dep.gateway.address, role=3, ready=True)
        return gateway_pb2.GetGatewayInfoResponse(node=node)

    async def GetTagKey(
        self, request: gateway_pb2.GetTagKeyRequest, context: object
    ) -> gateway_pb2.GetTagKeyResponse:
        return await asyncio.to_thread(serve_tag_key, self.dep, request, now=self.clock())

    async def GetOperands(
        self, request: gateway_pb2.GetOperandsRequest, context: object
    ) -> gateway_pb2.GetOperandsResponse:
        self.calls += 1
        if self.in_flight_probe is not None:
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight_probe())
        return await asyncio.to_thread(serve_operands, self.dep, request, now=self.clock())
