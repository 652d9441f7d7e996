"""The runner's loop (DESIGN §3, §8): register, heartbeat, claim, execute, submit.

At start, and every `registration_check_seconds`, the agent makes sure its enclave is
registered in NoxRegistry (with a fresh quote bound to its enclave address, re-registering
`reregister_margin_seconds` before expiry) and then checks itself exactly as any relying
party would (`RegistryView.require`: role RUNNER, not revoked, not expired, workload
allowed, quote verifies). Until that check passes it is not ready: it neither heartbeats nor
claims. A revoked or expired registration makes it not ready again.

Once ready it fetches the value-tag key through its gateway (`nox.runner.tagkey`), kept in
memory only; no task runs without it (retried every `retry_seconds`). Then it heartbeats
its capacity and supported operators to the orchestrator, claims as many tasks as it has
free slots (a long poll), and runs each task in a worker thread (`TaskExecutor.run_task`:
CPU work must not stall heartbeats), at most `capacity` at once.
A task whose assignment fails verification (signer not an active orchestrator, another
runner's, lease over) is refused: not executed, nothing submitted. Every other task ends
in a submitted result or TaskFailure.

Every answer from the orchestrator is a signed envelope checked like any other: signer the
orchestrator this runner addressed (and an active ORCHESTRATOR), audience this runner,
`request_hash` the hash of the request it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from nox import __version__
from nox.chain.registrar import QuoteProvider, Registrar, Registration, SelfRegistration
from nox.compute import Operator
from nox.crypto.envelope import verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.replay import ReplayCache
from nox.errors import InvalidArgument, NoxError
from nox.rpc.client import typed_error
from nox.rpc.logging import get_logger
from nox.runner.exceptions import NodeNotReady, ResponseMismatch
from nox.runner.executor import (
    ROLE_ORCHESTRATOR,
    ROLE_RUNNER,
    Assignment,
    TaskExecutor,
    TaskOutcome,
)
from nox.runner.tagkey import open_tag_key_response, tag_key_request
from nox.v1 import common_pb2, gateway_pb2, orchestrator_pb2, runner_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["SUPPORTED_OPERATORS", "AgentSettings", "RunnerAgent"]

SUPPORTED_OPERATORS: tuple[int, ...] = tuple(int(op) for op in Operator)
M = TypeVar("M", bound=Message)


class Directory(Protocol):
    """The registry view the runner checks itself and its peers with (`RegistryView`)."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise unless `address` is an active, attested node of `role` at `now`."""
        ...


@dataclass(frozen=True)
class AgentSettings:
    """How the loop behaves; `nox.runner.config.RunnerSettings` builds it from NOX_RUNNER_*."""

    # Tasks executed at once (the asyncio semaphore; also what heartbeats report).
    capacity: int = 4
    # Seconds a ClaimTasks may wait for work (long poll).
    claim_wait_seconds: int = 10
    # Seconds between heartbeats until the orchestrator names its own interval.
    heartbeat_seconds: float = 10.0
    # Seconds between checks of the runner's own registration.
    registration_check_seconds: float = 30.0
    # Re-register when the registration expires within this many seconds.
    reregister_margin_seconds: int = 3600
    # Register (and re-register) automatically; when False an operator registers the
    # enclave (`noxctl runner register`) and the runner only checks.
    auto_register: bool = True
    # Endpoint URI bound into the quote and registered (empty for runners behind NAT).
    endpoint: str = ""
    # Seconds to wait before retrying after an error or while not ready.
    retry_seconds: float = 1.0
    # Attempts to submit one result before giving up (the lease then expires, and the
    # orchestrator reassigns the task).
    submit_attempts: int = 3
    # Seconds per unary RPC (ClaimTasks adds its wait).
    rpc_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.claim_wait_seconds < 0 or self.submit_attempts < 1:
            raise InvalidArgument("capacity and submit_attempts must be positive")


class RunnerAgent:
    """One runner enclave: its key's executor, its registration, its orchestrator link."""

    def __init__(
        self,
        *,
        executor: TaskExecutor,
        settings: AgentSettings,
        directory: Directory,
        registrar: Registrar,
        quote_provider: QuoteProvider,
        orchestrator: Any,
        gateway: Any,
        orchestrator_address: bytes,
        gateway_address: bytes,
        replay: ReplayCache,
        orchestrator_endpoint: str = "",
        clock: Callable[[], int] = lambda: int(time.time()),
        logger: Any | None = None,
    ) -> None:
        self.executor = executor
        self.settings = settings
        self._directory = directory
        refresh = getattr(directory, "refresh", None)
        self._registration = SelfRegistration(
            registrar,
            enclave=executor.address,
            role=ROLE_RUNNER,
            endpoint=settings.endpoint,
            quote=quote_provider.quote,
            margin=settings.reregister_margin_seconds,
            check_seconds=settings.registration_check_seconds,
            auto_register=settings.auto_register,
            self_check=directory.require,
            on_register=refresh if callable(refresh) else None,
            clock=clock,
            logger=logger,
        )
        self._orchestrator = orchestrator  # OrchestratorServiceStub (async)
        self._gateway = gateway  # GatewayServiceStub (async)
        self.orchestrator_address = bytes(orchestrator_address)
        self.gateway_address = bytes(gateway_address)
        self._replay = replay
        self.orchestrator_endpoint = orchestrator_endpoint
        self._clock = clock
        self._log = logger if logger is not None else get_logger("nox.runner")
        self._slots = asyncio.Semaphore(settings.capacity)
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._cancelled: set[bytes] = set()
        self._heartbeat_interval = settings.heartbeat_seconds
        # Public state (GetRunnerStatus, health).
        self.registration: Registration | None = None
        self.ready = False
        self.not_ready_reason = "NOT_CHECKED"
        self.orchestrator_connected = False
        self.tasks_completed = 0
        self.tasks_failed = 0
        self.tasks_refused = 0
        self.started_at = clock()
        self.last_outcomes: list[TaskOutcome] = []

    def __repr__(self) -> str:
        return f"RunnerAgent(address=0x{self.address.hex()}, ready={self.ready})"

    @property
    def address(self) -> bytes:
        return self.executor.address

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    # ------------------------------------------------------------------ registration

    async def ensure_registered(self) -> bool:
        """Register or refresh when needed (if allowed), then check this enclave as a relying
        party would (`nox.chain.registrar.SelfRegistration.check`). Sets and returns `ready`;
        never raises a NoxError or AttestationError."""
        ok = await asyncio.to_thread(self._registration.check)
        self.registration = self._registration.record
        self._set_ready(ok, self._registration.reason)
        return ok

    def _set_ready(self, ready: bool, reason: str) -> None:
        if ready != self.ready or reason != self.not_ready_reason:
            self._log.info(
                "runner.readiness", runner="0x" + self.address.hex(), ready=ready, reason=reason
            )
        self.ready = ready
        self.not_ready_reason = reason

    def _still_ready(self) -> bool:
        record = self.registration
        if self.ready and record is not None and record.expires_at <= self._clock():
            self._set_ready(False, "REGISTRATION_EXPIRED")
        return self.ready

    # ------------------------------------------------------------------ signed calls

    async def _call(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        response_type: type[M],
        *,
        deadline: float,
    ) -> M:
        """Send a signed request, verify the orchestrator's signed answer, return its payload."""
        try:
            response = await method(request, timeout=deadline)
        except grpc.aio.AioRpcError as err:
            raise typed_error(err) from err
        now = self._clock()
        cfg = self.executor.config
        verified = verify_envelope(
            response.envelope,
            response_type,
            domain=cfg.domain,
            audience=self.address,
            now=now,
            replay=self._replay,
            max_skew=cfg.max_skew,
            max_ttl=cfg.max_envelope_ttl,
            expected_signer=self.orchestrator_address,
            authorize=lambda s: self._require(s, ROLE_ORCHESTRATOR, now),
        )
        message = verified.message
        if getattr(message, "request_hash", None) != keccak256(request.envelope.payload):
            raise ResponseMismatch("the orchestrator answered another request")
        return message

    def _require(self, address: bytes, role: int, now: int) -> None:
        self._directory.require(address, role, now)

    def _signed(self, payload: Message) -> SignedEnvelope:
        return self.executor.sign(payload, audience=self.orchestrator_address, now=self._clock())

    async def heartbeat(self) -> orchestrator_pb2.HeartbeatResponsePayload:
        """Report capacity, load and supported operators; apply cancellations."""
        if not self._still_ready():
            raise NodeNotReady(
                "not registered and attested", metadata={"why": self.not_ready_reason}
            )
        payload = orchestrator_pb2.HeartbeatPayload(
            capacity=self.settings.capacity,
            in_flight=self.in_flight,
            supported_operators=list(SUPPORTED_OPERATORS),
            active_task_ids=list(self._tasks),
            software_version=__version__,
        )
        request = orchestrator_pb2.HeartbeatRequest(envelope=self._signed(payload))
        try:
            answer = await self._call(
                self._orchestrator.Heartbeat,
                request,
                orchestrator_pb2.HeartbeatResponsePayload,
                deadline=self.settings.rpc_timeout_seconds,
            )
        except NoxError:
            self.orchestrator_connected = False
            raise
        self.orchestrator_connected = True
        if answer.heartbeat_interval_seconds:
            self._heartbeat_interval = float(answer.heartbeat_interval_seconds)
        self._cancelled.update(bytes(t) for t in answer.cancelled_task_ids)
        return answer

    async def claim(self, max_tasks: int) -> list[SignedEnvelope]:
        """Lease up to `max_tasks` tasks; returns their assignment envelopes (unverified)."""
        if not self._still_ready():
            raise NodeNotReady(
                "not registered and attested", metadata={"why": self.not_ready_reason}
            )
        wait = self.settings.claim_wait_seconds
        payload = orchestrator_pb2.ClaimTasksPayload(max_tasks=max_tasks, wait_seconds=wait)
        request = orchestrator_pb2.ClaimTasksRequest(envelope=self._signed(payload))
        answer = await self._call(
            self._orchestrator.ClaimTasks,
            request,
            orchestrator_pb2.ClaimTasksResponsePayload,
            deadline=self.settings.rpc_timeout_seconds + wait,
        )
        self.orchestrator_connected = True
        return list(answer.assignments)

    # ------------------------------------------------------------------ tag key

    async def ensure_tag_key(self) -> bool:
        """Fetch the value-tag key through the gateway unless held; never raises a NoxError.

        Returns whether the executor holds the key (failures are logged with their reason).
        """
        if self.executor.tag_key is not None:
            return True
        request, key = tag_key_request(
            self.executor, gateway=self.gateway_address, now=self._clock()
        )
        try:
            try:
                response = await self._gateway.GetTagKey(
                    request, timeout=self.settings.rpc_timeout_seconds
                )
            except grpc.aio.AioRpcError as err:
                raise typed_error(err) from err
            await asyncio.to_thread(
                open_tag_key_response,
                self.executor,
                response,
                requester_key=key,
                gateway=self.gateway_address,
                now=self._clock(),
            )
        except NoxError as exc:
            self._log.warning(
                "runner.tag_key_failed", runner="0x" + self.address.hex(), reason=exc.reason
            )
            return False
        self._log.info("runner.tag_key_fetched", runner="0x" + self.address.hex())
        return True

    # ------------------------------------------------------------------ tasks

    async def start_task(self, envelope: SignedEnvelope) -> asyncio.Task[None] | None:
        """Verify an assignment and, if trusted, run it in the background (holding a slot).

        Returns None when the assignment is refused or is a duplicate of a running task.
        """
        try:
            assignment = self.executor.open_assignment(envelope, now=self._clock())
        except NoxError as exc:
            self.tasks_refused += 1
            self._log.warning(
                "runner.assignment_refused", runner="0x" + self.address.hex(), reason=exc.reason
            )
            return None
        task_id = assignment.task_id
        if task_id in self._tasks:
            return None
        await self._slots.acquire()
        task = asyncio.create_task(self._run(assignment), name=f"task-{task_id.hex()[:12]}")
        self._tasks[task_id] = task
        task.add_done_callback(lambda done: self._release(task_id, done))
        return task

    def _release(self, task_id: bytes, done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            # A bug, not a task failure (those are submitted): log it, keep serving. The lease
            # runs out and the orchestrator reassigns the task.
            self._log.error(
                "runner.task_crashed", task_id=task_id.hex(), error=repr(done.exception())
            )
        self._tasks.pop(task_id, None)
        self._cancelled.discard(task_id)
        self._slots.release()

    async def _run(self, assignment: Assignment) -> None:
        if not await self.ensure_tag_key():
            return  # not run, nothing submitted: the lease ends and the task is reassigned
        loop = asyncio.get_running_loop()
        clock = self._clock
        timeout = self.settings.rpc_timeout_seconds

        async def get_operands(
            request: gateway_pb2.GetOperandsRequest,
        ) -> gateway_pb2.GetOperandsResponse:
            response: gateway_pb2.GetOperandsResponse = await self._gateway.GetOperands(
                request, timeout=timeout
            )
            return response

        def fetch(request: gateway_pb2.GetOperandsRequest) -> gateway_pb2.GetOperandsResponse:
            # Runs in the worker thread; the call itself runs on the agent's event loop.
            future = asyncio.run_coroutine_threadsafe(get_operands(request), loop)
            try:
                response: gateway_pb2.GetOperandsResponse = future.result()
            except grpc.aio.AioRpcError as err:
                raise typed_error(err) from err
            return response

        gateway = self.gateway_address
        outcome = await asyncio.to_thread(
            self.executor.run_task, assignment, fetch, gateway=gateway, clock=clock
        )
        if _failure_reason(outcome) == "WRONG_AUDIENCE":
            await self.refresh_gateway()
            if self.gateway_address != gateway:  # (another task may have learnt it first)
                # the gateway restarted with a new enclave key: run the task again for it
                outcome = await asyncio.to_thread(
                    self.executor.run_task,
                    assignment,
                    fetch,
                    gateway=self.gateway_address,
                    clock=clock,
                )
        self._log.info(
            "runner.task_done",
            task_id=assignment.task_id.hex(),
            failed=outcome.failed,
            reason=outcome.result.failure.reason if outcome.failed else "",
            bad_kms_nodes=list(outcome.bad_kms_nodes),
            crypto_s=round(outcome.timings.crypto, 6),
            compute_s=round(outcome.timings.compute, 6),
            rpc_s=round(outcome.timings.rpc, 6),
        )
        self.last_outcomes = [*self.last_outcomes[-15:], outcome]
        if assignment.task_id in self._cancelled:
            return  # the orchestrator withdrew it; its result would be refused anyway
        await self._submit(outcome.result)

    async def _submit(self, result: task_pb2.TaskResult) -> None:
        failed = result.WhichOneof("outcome") == "failure"
        for attempt in range(self.settings.submit_attempts):
            request = self.executor.submit_request(
                result, orchestrator=self.orchestrator_address, now=self._clock()
            )
            try:
                await self._call(
                    self._orchestrator.SubmitResult,
                    request,
                    orchestrator_pb2.SubmitResultResponsePayload,
                    deadline=self.settings.rpc_timeout_seconds,
                )
            except NoxError as exc:
                self._log.warning(
                    "runner.submit_failed",
                    task_id=result.task_id.hex(),
                    reason=exc.reason,
                    attempt=attempt + 1,
                )
                if not exc.retryable:
                    break
                await asyncio.sleep(self.settings.retry_seconds * (attempt + 1))
                continue
            if failed:
                self.tasks_failed += 1
            else:
                self.tasks_completed += 1
            return
        self.tasks_failed += 1

    async def refresh_orchestrator(self) -> None:
        """Ask the orchestrator for its enclave address again: it refuses our envelopes'
        audience after it restarted with a new enclave key. Trusting the answer adds no
        risk: every answer is still checked as signed by a registered orchestrator."""
        try:
            info = await self._orchestrator.GetOrchestratorInfo(
                orchestrator_pb2.GetOrchestratorInfoRequest(),
                timeout=self.settings.rpc_timeout_seconds,
            )
        except grpc.aio.AioRpcError:
            return
        address = bytes(info.node.enclave_address)
        if address and address != self.orchestrator_address:
            self._log.info("runner.orchestrator_changed", orchestrator="0x" + address.hex())
            self.orchestrator_address = address

    async def refresh_gateway(self) -> bool:
        """Ask the gateway for its enclave address again (it refuses our envelopes' audience
        after it restarted with a new enclave key); True when it changed. Its answers are
        still checked as signed by a registered gateway."""
        try:
            info = await self._gateway.GetGatewayInfo(
                gateway_pb2.GetGatewayInfoRequest(), timeout=self.settings.rpc_timeout_seconds
            )
        except (NoxError, grpc.aio.AioRpcError):
            return False
        address = bytes(info.node.enclave_address)
        if not address or address == self.gateway_address:
            return False
        self._log.info("runner.gateway_changed", gateway="0x" + address.hex())
        self.gateway_address = address
        return True

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then let in-flight tasks finish and submit."""
        loop = asyncio.get_running_loop()
        next_check = 0.0
        next_heartbeat = 0.0
        while not stop.is_set():
            if loop.time() >= next_check:
                await self.ensure_registered()
                next_check = loop.time() + self.settings.registration_check_seconds
            if not self._still_ready() or not await self.ensure_tag_key():
                await _wait(stop, self.settings.retry_seconds)
                continue
            try:
                if loop.time() >= next_heartbeat:
                    await self.heartbeat()
                    next_heartbeat = loop.time() + self._heartbeat_interval
                free = self.settings.capacity - self.in_flight
                if free <= 0:
                    await _wait_any(stop, list(self._tasks.values()), self._heartbeat_interval)
                    continue
                for envelope in await self.claim(free):
                    await self.start_task(envelope)
            except NoxError as exc:
                self._log.warning(
                    "runner.orchestrator_error", runner="0x" + self.address.hex(), reason=exc.reason
                )
                if exc.reason == "WRONG_AUDIENCE":
                    await self.refresh_orchestrator()
                await _wait(stop, self.settings.retry_seconds)
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # ------------------------------------------------------------------ status

    def status(self) -> runner_pb2.GetRunnerStatusResponse:
        """The public GetRunnerStatus answer."""
        cfg = self.executor.config
        record = self.registration
        node = common_pb2.NodeInfo(
            enclave_address=self.address,
            role=common_pb2.ROLE_RUNNER,
            operator_address=record.operator if record else b"",
            workload_id=record.workload_id if record else b"",
            registration_expires_at=record.expires_at if record and not record.revoked else 0,
            endpoint=self.settings.endpoint,
            ready=self.ready and self.orchestrator_connected,
            software_version=__version__,
            deployment=common_pb2.Deployment(
                chain_id=cfg.domain.chain_id,
                registry_address=cfg.domain.verifying_contract,
                compute_address=cfg.compute_address,
            ),
        )
        return runner_pb2.GetRunnerStatusResponse(
            node=node,
            capacity=self.settings.capacity,
            in_flight=self.in_flight,
            supported_operators=list(SUPPORTED_OPERATORS),
            orchestrator_endpoint=self.orchestrator_endpoint,
            orchestrator_connected=self.orchestrator_connected,
            tasks_completed=self.tasks_completed,
            tasks_failed=self.tasks_failed,
            started_at=self.started_at,
        )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_any(stop: asyncio.Event, tasks: list[asyncio.Task[None]], seconds: float) -> None:
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()


def _failure_reason(outcome: TaskOutcome) -> str:
    return outcome.result.failure.reason if outcome.failed else ""
