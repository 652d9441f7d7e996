"""Test doubles for the orchestrator suite: registry, ingestor, runners, gateway.

What is under test is the orchestrator with a real nats-server; these stand in for its
peers. The runner double speaks the real OrchestratorService API with signed envelopes and
checks every signed answer; the gateway double is a real gRPC GatewayService that checks the
orchestrator's StoreResults envelope and the executions in it, and records what it stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import Verified, sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import PermissionDenied, Unavailable
from nox.orchestrator import (
    CanonicalChain,
    GrpcGatewayStore,
    OrchestratorNode,
    OrchestratorSettings,
)
from nox.orchestrator.tasks import task_id_for
from nox.queue import QueueConnection, QueueSettings, publish_transaction
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    task_pb2,
)
from nox.v1.envelope_pb2 import SignedEnvelope

CHAIN_ID = 31337


class NoRecord:
    """Nested envelopes are verified without recording their nonce (docs/api.md)."""

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        return None


@dataclass
class Node:
    address: bytes


class FakeDirectory:
    """address -> role; `require` raises PermissionDenied like RegistryView does."""

    def __init__(self) -> None:
        self.roles: dict[bytes, int] = {}

    def add(self, key: EnclaveKey, role: int) -> EnclaveKey:
        self.roles[key.address] = role
        return key

    def add_address(self, address: bytes, role: int) -> None:
        self.roles[bytes(address)] = role

    def remove(self, address: bytes) -> None:
        self.roles.pop(address, None)

    def require(self, address: bytes, role: int, now: int) -> object:
        if self.roles.get(bytes(address)) != role:
            raise PermissionDenied("node is not registered", reason="SIGNER_NOT_REGISTERED")
        return Node(bytes(address))

    def active(self, role: int, now: int) -> list[Node]:
        return [Node(a) for a, r in self.roles.items() if r == role]


def handle(tag: int, type_code: int = 35) -> bytes:
    """A 32-byte handle: 26 bytes prehandle, chain id, type, version 0."""
    return tag.to_bytes(26, "big") + CHAIN_ID.to_bytes(4, "big") + bytes([type_code, 0])


def tx_message(
    deployment: common_pb2.Deployment, n: int, *, ops: int = 2, block: int = 7
) -> task_pb2.TransactionMessage:
    """A transaction with `ops` chained adds: a + b -> c1, c1 + b -> c2, ..."""
    a, b = handle(1000 * n + 1), handle(1000 * n + 2)
    caller = b"\xca" * 20
    operations = []
    left = a
    for i in range(ops):
        out = handle(1000 * n + 100 + i)
        operations.append(
            task_pb2.Operation(
                log_index=i, operator=1, caller=caller, input_handles=[left, b],
                output_handles=[out],
            )
        )  # fmt: skip
        left = out
    return task_pb2.TransactionMessage(
        chain_id=deployment.chain_id,
        block_number=block,
        block_hash=keccak256(b"block", block.to_bytes(8, "big")),
        block_timestamp=1_700_000_000,
        transaction_hash=keccak256(b"tx", n.to_bytes(8, "big")),
        compute_address=deployment.compute_address,
        operations=operations,
    )


async def publish(
    conn: QueueConnection,
    ingestor: EnclaveKey,
    domain: Domain,
    msg: task_pb2.TransactionMessage,
    now: int,
) -> bytes:
    """Sign `msg` as the ingestor (broadcast to NoxCompute) and publish it; return task id."""
    env = sign_envelope(
        ingestor, msg, domain=domain, audience=msg.compute_address, now=now, ttl=86_400
    )
    await publish_transaction(conn, msg.chain_id, msg.transaction_hash, env.SerializeToString())
    return task_id_for(msg.chain_id, msg.transaction_hash)


async def publish_tx(h: Harness, conn: QueueConnection, n: int, **kw: Any) -> bytes:
    """Publish transaction number `n` (see tx_message) signed by the harness's ingestor."""
    return await publish(
        conn, h.ingestor, h.domain, tx_message(h.deployment, n, **kw), int(h.clock())
    )


@dataclass
class Claimed:
    """An assignment as the runner double verified it."""

    envelope: SignedEnvelope
    assignment: task_pb2.TaskAssignment
    signer: bytes


class FakeRunner:
    """A runner double: signs its calls, checks the orchestrator's signatures."""

    def __init__(
        self,
        key: EnclaveKey,
        *,
        target: str,
        orchestrator: bytes,
        domain: Domain,
        clock: Callable[[], float],
        value: bytes = b"right",
    ) -> None:
        self.key = key
        self.channel = create_channel(target)
        self.stub = orchestrator_pb2_grpc.OrchestratorServiceStub(self.channel)
        self.orchestrator = orchestrator
        self.domain = domain
        self.clock = clock
        self.value = value
        self.replay = MemoryReplayCache()

    async def close(self) -> None:
        await self.channel.close()

    def _sign(self, payload: object) -> SignedEnvelope:
        return sign_envelope(
            self.key,
            payload,  # type: ignore[arg-type]
            domain=self.domain,
            audience=self.orchestrator,
            now=int(self.clock()),
            ttl=120,
        )

    def _open(self, env: SignedEnvelope, kind: type, request: SignedEnvelope) -> Verified:  # type: ignore[type-arg]
        v = verify_envelope(
            env,
            kind,
            domain=self.domain,
            audience=self.key.address,
            now=int(self.clock()),
            replay=self.replay,
            expected_signer=self.orchestrator,
        )
        assert v.message.request_hash == keccak256(request.payload)
        return v

    async def heartbeat(
        self, capacity: int = 4, active: Sequence[bytes] = (), operators: Sequence[int] = (1,)
    ) -> list[bytes]:
        req = self._sign(
            orchestrator_pb2.HeartbeatPayload(
                capacity=capacity, in_flight=len(active), supported_operators=list(operators),
                active_task_ids=list(active),
            )
        )  # fmt: skip
        resp = await self.stub.Heartbeat(orchestrator_pb2.HeartbeatRequest(envelope=req))
        v = self._open(resp.envelope, orchestrator_pb2.HeartbeatResponsePayload, req)
        return [bytes(t) for t in v.message.cancelled_task_ids]

    async def claim(self, max_tasks: int = 1, wait: int = 5) -> list[Claimed]:
        req = self._sign(orchestrator_pb2.ClaimTasksPayload(max_tasks=max_tasks, wait_seconds=wait))
        resp = await self.stub.ClaimTasks(orchestrator_pb2.ClaimTasksRequest(envelope=req))
        v = self._open(resp.envelope, orchestrator_pb2.ClaimTasksResponsePayload, req)
        out = []
        for env in v.message.assignments:
            a = verify_envelope(
                env,
                task_pb2.TaskAssignment,
                domain=self.domain,
                audience=self.key.address,
                now=int(self.clock()),
                replay=NoRecord(),
                expected_signer=self.orchestrator,
            )
            out.append(Claimed(env, a.message, a.signer))
        return out

    def outputs(self, claimed: Claimed) -> task_pb2.TaskOutputs:
        return task_pb2.TaskOutputs(
            ciphertexts=[
                common_pb2.TypedCiphertext(
                    handle=h,
                    ciphertext=os.urandom(48),
                    ephemeral_public_key=b"\x02" + os.urandom(32),
                    nonce=os.urandom(12),
                    value_tag=keccak256(h, self.value),
                )
                for h in claimed.assignment.output_handles
            ]
        )

    async def submit(
        self,
        claimed: Claimed,
        *,
        outputs: task_pb2.TaskOutputs | None = None,
        failure: task_pb2.TaskFailure | None = None,
    ) -> int:
        result = task_pb2.TaskResult(
            task_id=claimed.assignment.task_id, assignment_hash=keccak256(claimed.envelope.payload)
        )
        if failure is not None:
            result.failure.CopyFrom(failure)
        else:
            result.outputs.CopyFrom(outputs if outputs is not None else self.outputs(claimed))
        req = self._sign(orchestrator_pb2.SubmitResultPayload(result=result))
        resp = await self.stub.SubmitResult(orchestrator_pb2.SubmitResultRequest(envelope=req))
        v = self._open(resp.envelope, orchestrator_pb2.SubmitResultResponsePayload, req)
        return int(v.message.state)


@dataclass
class FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """StoreResults only: checks the request and every execution, stores value tags."""

    key: EnclaveKey
    domain: Domain
    directory: FakeDirectory
    clock: Callable[[], float]
    stored: dict[bytes, bytes] = field(default_factory=dict)
    calls: list[bytes] = field(default_factory=list)
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    unavailable: int = 0
    replay: MemoryReplayCache = field(default_factory=MemoryReplayCache)

    async def StoreResults(
        self, request: gateway_pb2.StoreResultsRequest, context: object
    ) -> gateway_pb2.StoreResultsResponse:
        now = int(self.clock())
        v = verify_envelope(
            request.envelope,
            gateway_pb2.StoreResultsPayload,
            domain=self.domain,
            audience=self.key.address,
            now=now,
            replay=self.replay,
            authorize=lambda s: self.directory.require(s, common_pb2.ROLE_ORCHESTRATOR, now),
        )
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.unavailable > 0:
            self.unavailable -= 1
            raise Unavailable("store down", reason="STORE_UNAVAILABLE")
        payload = v.message
        tags: set[tuple[bytes, ...]] = set()
        handles: list[bytes] = []
        for ex in payload.executions:
            a = verify_envelope(
                ex.assignment, task_pb2.TaskAssignment, domain=self.domain,
                audience=ex.assignment.audience, now=now, replay=NoRecord(),
                expected_signer=v.signer,
            ).message  # fmt: skip
            r = verify_envelope(
                ex.result, orchestrator_pb2.SubmitResultPayload, domain=self.domain,
                audience=v.signer, now=now, replay=NoRecord(), expected_signer=a.runner_address,
            ).message.result  # fmt: skip
            assert r.task_id == payload.task_id == a.task_id
            assert r.assignment_hash == keccak256(ex.assignment.payload)
            handles = [c.handle for c in r.outputs.ciphertexts]
            assert handles == list(a.output_handles)
            tags.add(tuple(c.value_tag for c in r.outputs.ciphertexts))
        assert len(tags) == 1
        self.calls.append(payload.task_id)
        outcomes = []
        for h, t in zip(handles, next(iter(tags)), strict=True):
            created = h not in self.stored
            self.stored[h] = t
            outcomes.append(
                gateway_pb2.StoredHandle(
                    handle=h,
                    outcome=gateway_pb2.STORE_OUTCOME_CREATED
                    if created
                    else gateway_pb2.STORE_OUTCOME_UNCHANGED,
                )
            )
        answer = gateway_pb2.StoreResultsResponsePayload(
            request_hash=keccak256(request.envelope.payload),
            task_id=payload.task_id,
            stored_handles=outcomes,
        )
        env = sign_envelope(self.key, answer, domain=self.domain, audience=v.signer, now=now)
        return gateway_pb2.StoreResultsResponse(envelope=env)


ROLE = common_pb2


class Harness:
    """Builds orchestrator instances and runner doubles around one gateway double."""

    def __init__(
        self,
        queue: QueueSettings,
        deployment: common_pb2.Deployment | None = None,
        *,
        directory: Any = None,
    ) -> None:
        self.queue = queue
        self.clock = time.time
        self.directory = directory if directory is not None else FakeDirectory()
        self.deployment = deployment or common_pb2.Deployment(
            chain_id=CHAIN_ID,
            registry_address=os.urandom(20),
            compute_address=os.urandom(20),
            acl_address=os.urandom(20),
        )
        self.domain = Domain(self.deployment.chain_id, self.deployment.registry_address)
        self.ingestor = self.directory.add(EnclaveKey.generate(), ROLE.ROLE_INGESTOR)
        self.gateway_key = self.directory.add(EnclaveKey.generate(), ROLE.ROLE_GATEWAY)
        self.gateway = FakeGateway(self.gateway_key, self.domain, self.directory, self.clock)
        self.nodes: list[OrchestratorNode] = []
        self.runners: list[FakeRunner] = []
        self._closers: list[Any] = []

    async def start_gateway(self) -> None:
        spec = ServiceSpec(
            name="nox.v1.GatewayService",
            add=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
            servicer=self.gateway,
        )
        server = create_server([spec], settings=ServerSettings())
        await server.start()
        self.gateway_target = server.target
        self._closers.append(server)

    async def orchestrator(
        self, canonical: CanonicalChain | None = None, **settings: Any
    ) -> OrchestratorNode:
        key = self.directory.add(EnclaveKey.generate(), ROLE.ROLE_ORCHESTRATOR)
        channel = create_channel(self.gateway_target)
        store = GrpcGatewayStore(
            channel,
            key=key,
            domain=self.domain,
            gateway_address=self.gateway_key.address,
            directory=self.directory,
            clock=self.clock,
        )
        base = OrchestratorSettings(
            lease_seconds=30, heartbeat_interval=1, runner_lost_after=30.0, tick_interval=0.1,
            fetch_wait=0.5,
        )  # fmt: skip
        node = OrchestratorNode(
            key=key,
            deployment=self.deployment,
            queue=self.queue,
            directory=self.directory,
            gateway=store,
            settings=dataclasses.replace(base, **settings),
            canonical=canonical,
            clock=self.clock,
        )
        await node.start()
        self.nodes.append(node)
        self._closers.append(channel)
        return node

    def runner(self, node: OrchestratorNode, *, value: bytes = b"right") -> FakeRunner:
        key = self.directory.add(EnclaveKey.generate(), ROLE.ROLE_RUNNER)
        r = FakeRunner(
            key, target=node.target, orchestrator=node.address, domain=self.domain,
            clock=self.clock, value=value,
        )  # fmt: skip
        self.runners.append(r)
        return r

    def runner_for(self, key: EnclaveKey, target: str, orchestrator: bytes) -> FakeRunner:
        """A runner double with a given key, for an orchestrator outside this process."""
        r = FakeRunner(key, target=target, orchestrator=orchestrator, domain=self.domain,
                       clock=self.clock)  # fmt: skip
        self.runners.append(r)
        return r

    async def close(self) -> None:
        for r in self.runners:
            await r.close()
        for node in self.nodes:
            await node.stop()
        for c in reversed(self._closers):
            if hasattr(c, "stop"):
                await c.stop(0)
            else:
                await c.close()
