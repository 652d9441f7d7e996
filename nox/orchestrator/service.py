"""OrchestratorService: the thin gRPC layer over the scheduler.

Every runner call is a SignedEnvelope: verified (audience = this orchestrator, window,
signature), its signer checked as an active ROLE_RUNNER in the registry, its nonce recorded,
and only then parsed. Every answer is signed by this orchestrator for the calling runner and
binds the request (request_hash = keccak256 of the request payload bytes).

`ready` (attested and registered) gates every signed call; a brief loss of the queue does not:
results are still taken and stored, their acknowledgement waits for the reconnection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc.aio
from google.protobuf.message import Message

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import Verified, sign_envelope, verify_envelope
from nox.crypto.exceptions import EnvelopeMalformed
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import ReplayCache
from nox.errors import InvalidArgument
from nox.orchestrator.config import OrchestratorSettings
from nox.orchestrator.directory import NodeDirectory
from nox.orchestrator.exceptions import NotReady
from nox.orchestrator.scheduler import Scheduler
from nox.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["SERVICE_NAME", "OrchestratorServicer"]

SERVICE_NAME = "nox.v1.OrchestratorService"
M = TypeVar("M", bound=Message)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """See the module docstring."""

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        key: EnclaveKey,
        domain: Domain,
        directory: NodeDirectory,
        replay: ReplayCache,
        settings: OrchestratorSettings,
        deployment: common_pb2.Deployment,
        clock: Callable[[], float],
        software_version: str = "",
        ready: Callable[[], bool] = lambda: True,
        connected: Callable[[], bool] = lambda: True,
    ) -> None:
        self._scheduler = scheduler
        self._key = key
        self._domain = domain
        self._directory = directory
        self._replay = replay
        self._settings = settings
        self._deployment = deployment
        self._clock = clock
        self._version = software_version
        self._ready = ready
        self._connected = connected

    # ------------------------------------------------------------------ helpers

    def _open(self, envelope: SignedEnvelope, message_type: type[M], present: bool) -> Verified[M]:
        if not present:
            raise EnvelopeMalformed("request carries no envelope", metadata={"field": "envelope"})
        if not self._ready():
            raise NotReady("orchestrator is not attested and registered (yet)")
        now = int(self._clock())

        def authorize(signer: bytes) -> None:
            self._directory.require(signer, common_pb2.ROLE_RUNNER, now)

        return verify_envelope(
            envelope,
            message_type,
            domain=self._domain,
            audience=self._key.address,
            now=now,
            replay=self._replay,
            max_skew=self._settings.max_skew,
            max_ttl=self._settings.max_envelope_ttl,
            authorize=authorize,
        )

    def _sign(self, payload: Message, runner: bytes) -> SignedEnvelope:
        return sign_envelope(
            self._key,
            payload,
            domain=self._domain,
            audience=runner,
            now=int(self._clock()),
            ttl=self._settings.response_ttl,
        )

    # ------------------------------------------------------------------ methods

    async def GetOrchestratorInfo(
        self,
        request: orchestrator_pb2.GetOrchestratorInfoRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> orchestrator_pb2.GetOrchestratorInfoResponse:
        node = common_pb2.NodeInfo(
            enclave_address=self._key.address,
            role=common_pb2.ROLE_ORCHESTRATOR,
            ready=self._ready() and self._connected(),
            software_version=self._version,
            deployment=self._deployment,
        )
        return orchestrator_pb2.GetOrchestratorInfoResponse(
            node=node,
            heartbeat_interval_seconds=self._settings.heartbeat_interval,
            lease_seconds=self._settings.lease_seconds,
            limits=self._settings.limits.to_proto(),
        )

    async def Heartbeat(
        self,
        request: orchestrator_pb2.HeartbeatRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> orchestrator_pb2.HeartbeatResponse:
        v = self._open(
            request.envelope, orchestrator_pb2.HeartbeatPayload, request.HasField("envelope")
        )
        p = v.message
        if p.capacity < 1 or any(op > 255 for op in p.supported_operators):
            raise InvalidArgument("capacity must be >= 1 and operators are uint8 codes")
        cancelled = self._scheduler.heartbeat(
            v.signer,
            capacity=p.capacity,
            supported=frozenset(p.supported_operators),
            active_task_ids=frozenset(bytes(t) for t in p.active_task_ids),
        )
        answer = orchestrator_pb2.HeartbeatResponsePayload(
            request_hash=keccak256(request.envelope.payload),
            heartbeat_interval_seconds=self._settings.heartbeat_interval,
            cancelled_task_ids=cancelled,
        )
        return orchestrator_pb2.HeartbeatResponse(envelope=self._sign(answer, v.signer))

    async def ClaimTasks(
        self,
        request: orchestrator_pb2.ClaimTasksRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> orchestrator_pb2.ClaimTasksResponse:
        v = self._open(
            request.envelope, orchestrator_pb2.ClaimTasksPayload, request.HasField("envelope")
        )
        p = v.message
        if p.max_tasks < 1:
            raise InvalidArgument("max_tasks must be at least 1")
        # the long poll must end before the runner's envelope (and its patience) does
        wait = min(float(p.wait_seconds), max(0.0, request.envelope.expires_at - self._clock()))
        assignments = await self._scheduler.claim(v.signer, p.max_tasks, wait)
        answer = orchestrator_pb2.ClaimTasksResponsePayload(
            request_hash=keccak256(request.envelope.payload), assignments=assignments
        )
        return orchestrator_pb2.ClaimTasksResponse(envelope=self._sign(answer, v.signer))

    async def SubmitResult(
        self,
        request: orchestrator_pb2.SubmitResultRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> orchestrator_pb2.SubmitResultResponse:
        v = self._open(
            request.envelope, orchestrator_pb2.SubmitResultPayload, request.HasField("envelope")
        )
        result = v.message.result
        if len(result.task_id) != 32 or len(result.assignment_hash) != 32:
            raise InvalidArgument("task_id and assignment_hash must be 32 bytes")
        if result.WhichOneof("outcome") is None:
            raise InvalidArgument("a result carries outputs or a failure")
        state = await self._scheduler.submit(v.signer, result, request.envelope)
        answer = orchestrator_pb2.SubmitResultResponsePayload(
            request_hash=keccak256(request.envelope.payload),
            task_id=result.task_id,
            state=state,  # type: ignore[arg-type]
        )
        return orchestrator_pb2.SubmitResultResponse(envelope=self._sign(answer, v.signer))

    async def GetTaskStatus(
        self,
        request: orchestrator_pb2.GetTaskStatusRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> orchestrator_pb2.GetTaskStatusResponse:
        if len(request.task_id) != 32:
            raise InvalidArgument("task_id must be 32 bytes")
        return orchestrator_pb2.GetTaskStatusResponse(
            status=self._scheduler.status(request.task_id)
        )
