"""The orchestrator's engine: runner pool, task table, leases, results (DESIGN §8).

Flow. A runner's ClaimTasks takes ready tasks it can run (its free capacity, its supported
operators, never two slots of one task); when none is ready the claim pulls from the shared
durable JetStream consumer, so an instance takes messages only when it has a runner waiting
for work and idle instances leave them to busy ones. Each assignment is an
orchestrator-signed `TaskAssignment` with a lease deadline; while a task is held here its
queue message gets in-progress acks. A lease that runs out, a runner that stops
heartbeating, disappears from the registry or no longer lists the task, revokes the
assignment and the slot goes to another runner (attempt + 1). A submitted result is checked
against its assignment (runner, task, exactly the output handles) and, once k runners agree
on every value tag, forwarded to the gateway; the queue message is acknowledged only after
the gateway's signed answer. Poison (limits, a permanent failure, disagreement, attempts
exhausted) is parked on the dead-letter subject with its reason.

If this instance dies, its messages' in-progress acks stop and JetStream redelivers them to
another instance after `ack_wait`; the gateway's idempotent storage makes any repeated
execution harmless. Task status is kept in memory per instance (GetTaskStatus answers for the
tasks this instance holds or finished within `status_retention`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError, Unavailable
from nox.orchestrator.config import OrchestratorSettings
from nox.orchestrator.dependencies import DependencyTracker, missing_inputs
from nox.orchestrator.directory import CanonicalChain, NodeDirectory
from nox.orchestrator.exceptions import (
    LeaseExpired,
    LeaseNotHeld,
    OutputsMismatch,
    ProducerMissing,
    ResultDisagreement,
    RunnerUnknown,
    TaskNotFound,
    TransactionOrphaned,
)
from nox.orchestrator.gateway import GatewayStore
from nox.orchestrator.state import Assignment, OrchestratorMetrics, RunnerState, Task
from nox.orchestrator.tasks import TaskSpec, check_limits
from nox.queue import REASON_MAX_DELIVERIES, Lease, QueueUnavailable, TxConsumer
from nox.queue.exceptions import LeaseSettled
from nox.rpc.logging import module_logger
from nox.v1 import common_pb2, gateway_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["Assignment", "OrchestratorMetrics", "RunnerState", "Scheduler", "Task"]

_log = module_logger("nox.orchestrator")

S = task_pb2.TaskState
ROLE_RUNNER = common_pb2.ROLE_RUNNER
_REASON = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_TERMINAL = frozenset({S.TASK_STATE_STORED, S.TASK_STATE_FAILED, S.TASK_STATE_WITHDRAWN})
# Runners hold these: their results (and the orphan check before storing) come next.
_IN_FLIGHT = frozenset({S.TASK_STATE_ASSIGNED, S.TASK_STATE_SUBMITTED})
# A runner found an input not stored yet: the task producing it is still being computed.
_INPUT_MISSING = frozenset({"HANDLE_NOT_FOUND", "OPERAND_MISSING"})
_RETRY_MAX = 2.0  # seconds: the longest back-off between retries that spend no attempt


class Scheduler:
    """See the module docstring. All methods run on one event loop."""

    def __init__(
        self,
        *,
        key: EnclaveKey,
        domain: Domain,
        settings: OrchestratorSettings,
        consumer: TxConsumer[TaskSpec],
        gateway: GatewayStore,
        directory: NodeDirectory,
        metrics: OrchestratorMetrics,
        canonical: CanonicalChain | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.domain = domain
        self.settings = settings
        self.consumer = consumer
        self.gateway = gateway
        self.directory = directory
        self.metrics = metrics
        self.canonical = canonical
        self.clock = clock
        self.tasks: dict[bytes, Task] = {}
        self.runners: dict[bytes, RunnerState] = {}
        self._ready: deque[bytes] = deque()
        self._dependencies = DependencyTracker()
        self._pull: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._limits = settings.limits.to_proto()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the housekeeping loop (lease expiry, runner loss, keep-alive, retries)."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._housekeeping(), name="nox-orch-ticks")

    async def stop(self) -> None:
        for task in (self._loop_task, self._pull):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = self._pull = None

    # ------------------------------------------------------------------ runners

    def heartbeat(
        self,
        runner: bytes,
        *,
        capacity: int,
        supported: frozenset[int],
        active_task_ids: frozenset[bytes],
    ) -> list[bytes]:
        """Record a heartbeat; return the task ids the runner must abandon."""
        now = self.clock()
        state = self.runners.get(runner)
        if state is None:
            state = RunnerState(runner, capacity, supported, now)
            self.runners[runner] = state
            self.metrics.runners.set(len(self.runners))
        state.capacity, state.supported, state.last_seen = capacity, supported, now
        grace = self.settings.heartbeat_interval
        for task in list(self.tasks.values()):
            for a in task.assignments:
                if a.runner != runner or a.state != "active":
                    continue
                if task.task_id not in active_task_ids and a.assigned_at + grace < now:
                    self._revoke(task, a, "runner_dropped")
        cancelled = set(state.cancelled)
        for task_id in active_task_ids:
            held = self.tasks.get(task_id)
            mine = held is not None and any(
                a.runner == runner and a.state == "active" for a in held.assignments
            )
            if not mine:
                cancelled.add(task_id)
        state.cancelled.clear()
        return sorted(cancelled)

    def _free_capacity(self, runner: RunnerState) -> int:
        held = sum(
            1
            for task in self.tasks.values()
            for a in task.assignments
            if a.runner == runner.address and a.state == "active"
        )
        return max(0, runner.capacity - held)

    # ------------------------------------------------------------------ claims

    async def claim(self, runner: bytes, max_tasks: int, wait: float) -> list[SignedEnvelope]:
        """Lease up to `max_tasks` tasks to `runner`, waiting up to `wait` s for work."""
        state = self.runners.get(runner)
        if state is None:
            raise RunnerUnknown("send a heartbeat with your capacity before claiming tasks")
        deadline = time.monotonic() + min(max(wait, 0.0), self.settings.max_claim_wait)
        while True:
            state.last_seen = self.clock()
            want = min(max_tasks, self._free_capacity(state))
            if want <= 0:
                return []
            taken = self._take(state, want)
            if taken:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._fetch(want, min(remaining, self.settings.fetch_wait))

    def _take(self, runner: RunnerState, want: int) -> list[SignedEnvelope]:
        out: list[SignedEnvelope] = []
        for task_id in list(self._ready):
            if len(out) >= want:
                break
            task = self.tasks.get(task_id)
            if task is None or task.state in _TERMINAL or not self._needs_slot(task):
                self._discard_ready(task_id)
                continue
            if not task.spec.operators <= runner.supported or task.not_before > self.clock():
                continue
            if not self._may_take(task, runner.address):
                continue
            out.append(self._assign(task, runner.address))
            if not self._needs_slot(task):
                self._discard_ready(task_id)
        return out

    def _may_take(self, task: Task, runner: bytes) -> bool:
        """Never two live slots of one task on one runner; a runner that lost or failed the
        task gets it back only after the others had a heartbeat interval to take it."""
        if any(a.runner == runner for a in task.live()):
            return False
        if any(a.runner == runner for a in task.assignments):
            return self.clock() - task.requeued_at >= self.settings.heartbeat_interval
        return True

    def _discard_ready(self, task_id: bytes) -> None:
        with contextlib.suppress(ValueError):
            self._ready.remove(task_id)

    def _needs_slot(self, task: Task) -> bool:
        return (
            task.state not in _TERMINAL
            and not task.exhausted
            and len(task.live()) < self.settings.redundancy
        )

    def _assign(self, task: Task, runner: bytes) -> SignedEnvelope:
        now = int(self.clock())
        attempt = len(task.assignments) + 1
        lease_end = now + self.settings.lease_seconds
        payload = task_pb2.TaskAssignment(
            task_id=task.task_id,
            transaction=task.spec.envelope,
            input_handles=list(task.spec.input_handles),
            output_handles=list(task.spec.output_handles),
            runner_address=runner,
            assigned_at=now,
            lease_expires_at=lease_end,
            attempt=attempt,
            limits=self._limits,
            redundancy=self.settings.redundancy,
        )
        envelope = sign_envelope(
            self.key,
            payload,
            domain=self.domain,
            audience=runner,
            now=now,
            ttl=self.settings.lease_seconds + self.settings.assignment_slack,
        )
        task.assignments.append(
            Assignment(runner, attempt, envelope, keccak256(envelope.payload), now, lease_end)
        )
        self._set_state(task, S.TASK_STATE_ASSIGNED)
        self.metrics.assignments.inc()
        _log.info("task_assigned", task=task.task_id.hex(), runner=runner.hex(), attempt=attempt)
        return envelope

    async def _fetch(self, batch: int, wait: float) -> None:
        """Wait up to `wait` s for work: a pull of up to `batch` messages from the shared
        consumer, or a task here becoming ready (a dependency stored, a retry due), whichever
        comes first. The pull is not cancelled when a task becomes ready first (a cancelled
        pull could strand delivered messages until `ack_wait`): it finishes in the
        background and its messages join the task table; one pull runs at a time."""
        if self._pull is not None and self._pull.done() and not self._pull.cancelled():
            error = self._pull.exception()
            if error is not None:
                _log.warning("queue_pull_failed", error=type(error).__name__)
        if self._pull is None or self._pull.done():
            self._pull = asyncio.create_task(self._pull_into_table(batch, wait))
        self._changed.clear()
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait(
                {self._pull, changed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()

    async def _pull_into_table(self, batch: int, wait: float) -> None:
        try:
            leases = await self.consumer.fetch(batch=batch, wait=wait)
        except QueueUnavailable:
            await asyncio.sleep(min(wait, 0.2))
            leases = []
        if leases and self.canonical is not None:
            self.canonical.prefetch(lease.value.message.block_number for lease in leases)
        for lease in leases:
            await self._admit(lease)
        self._changed.set()

    async def _admit(self, lease: Lease[TaskSpec]) -> None:
        spec = lease.value
        task = self.tasks.get(spec.task_id)
        now = self.clock()
        if task is not None:
            task.lease = lease  # a redelivery: the old delivery can no longer be settled
            if task.state == S.TASK_STATE_STORED:
                await self._settle(task, "ack")
            elif task.state in _TERMINAL:
                await self._settle(task, "term")
            return
        task = Task(spec, lease, S.TASK_STATE_QUEUED, now, now, last_progress=now)
        self.tasks[spec.task_id] = task
        try:
            check_limits(spec, self.settings.limits)
        except NoxError as err:
            await self._fail(task, err.reason, err.message, int(err.code.value[0]))
            return
        if self._orphaned(task):
            await self._withdraw(task)
            return
        if not self._dependencies.add(spec.task_id, spec.input_handles, spec.output_handles):
            self._ready.append(spec.task_id)

    def _finished(self, task: Task) -> None:
        """`task` reached a final state or left this instance: ready what waited on it. A
        dependent of a failed task is released too; its runner then finds the input missing
        and the task is parked once `retry_wait` has passed."""
        for waiting_id in self._dependencies.finish(task.task_id, task.spec.output_handles):
            waiting = self.tasks.get(waiting_id)
            if waiting is not None and waiting.state not in _TERMINAL:
                if waiting_id not in self._ready:
                    self._ready.append(waiting_id)
                self._changed.set()

    # ------------------------------------------------------------------ results

    async def submit(
        self, runner: bytes, result: task_pb2.TaskResult, envelope: SignedEnvelope
    ) -> int:
        """Check a runner's result against its assignment; store when complete.

        Returns the task's state after the submission (task.proto TaskState).
        """
        task = self.tasks.get(result.task_id)
        if task is None:
            raise TaskNotFound("no such task here")
        if task.state in _TERMINAL:
            return task.state
        assignment = next((a for a in task.assignments if a.hash == result.assignment_hash), None)
        if assignment is None or assignment.runner != runner:
            raise LeaseNotHeld("no assignment of this task to this runner with that hash")
        if assignment.state == "submitted":
            return task.state
        if assignment.state != "active":
            raise LeaseNotHeld("the assignment was revoked; the task was reassigned")
        if self.clock() >= assignment.lease_expires_at:
            self._revoke(task, assignment, "lease_expired")
            raise LeaseExpired("the lease ran out before the result arrived")
        if result.HasField("failure"):
            await self._runner_failed(task, assignment, result.failure)
            return task.state
        outputs = result.outputs.ciphertexts
        handles = [c.handle for c in outputs]
        if handles != list(task.spec.output_handles):
            raise OutputsMismatch("outputs are not exactly the assignment's output handles")
        for c in outputs:
            if len(c.value_tag) != 32 or len(c.ephemeral_public_key) != 33 or len(c.nonce) != 12:
                raise OutputsMismatch("an output lacks its value tag, point or nonce")
        assignment.state = "submitted"
        assignment.result = envelope
        assignment.tags = tuple(c.value_tag for c in outputs)
        self._set_state(task, S.TASK_STATE_SUBMITTED)
        submitted = [a for a in task.assignments if a.state == "submitted"]
        if len(submitted) < self.settings.redundancy:
            return task.state
        if len({a.tags for a in submitted}) > 1:
            await self._disagree(task, submitted)
            return task.state
        await self._store(task)
        return task.state

    async def _runner_failed(
        self, task: Task, assignment: Assignment, failure: task_pb2.TaskFailure
    ) -> None:
        assignment.state = "failed"
        waiting = failure.reason in _INPUT_MISSING or failure.retryable
        if waiting and self._retry_later(task, assignment, failure):
            return
        task.failure = task_pb2.TaskFailure()
        task.failure.CopyFrom(failure)
        if failure.retryable:  # e.g. the gateway or KMS was down: run it again elsewhere
            self.metrics.reassignments.labels("runner_failure").inc()
            self._requeue(task)
            return
        reason = failure.reason if _REASON.match(failure.reason) else "TASK_FAILED"
        await self._fail(task, reason, failure.message, failure.code)

    def _retry_later(
        self, task: Task, assignment: Assignment, failure: task_pb2.TaskFailure
    ) -> bool:
        """Put back a task that failed for a reason of the moment (an input not stored yet;
        the gateway or KMS unavailable, e.g. restarting), with exponential back-off, for up
        to `retry_wait` seconds after it arrived. The failed assignment does not count as an
        attempt: a gateway restart must not use up the attempts of every task in flight.
        False when the wait is over (then the usual rules apply)."""
        now = self.clock()
        if now - task.created_at >= self.settings.retry_wait:
            return False
        task.assignments.remove(assignment)
        task.deferrals += 1
        task.not_before = now + min(0.05 * 2**task.deferrals, _RETRY_MAX)
        cause = "input_missing" if failure.reason in _INPUT_MISSING else "unavailable"
        if cause == "input_missing":
            if task.inputs_missing_since is None:
                task.inputs_missing_since = now
            task.missing = tuple(missing_inputs(failure.message, task.spec.input_handles))
        self.metrics.reassignments.labels(cause).inc()
        if not task.live():
            self._set_state(task, S.TASK_STATE_QUEUED)
        if task.task_id not in self._ready:
            self._ready.append(task.task_id)
        self._changed.set()
        return True

    async def _disagree(self, task: Task, submitted: list[Assignment]) -> None:
        self.metrics.disagreements.inc()
        for a in submitted:
            runner = self.runners.get(a.runner)
            if runner is not None:
                runner.flagged += 1
        names = ",".join(a.runner.hex() for a in submitted)
        _log.warning("result_disagreement", task=task.task_id.hex(), runners=names)
        await self._fail(
            task, ResultDisagreement.reason, f"value tags differ between runners {names}", 9
        )

    async def _store(self, task: Task) -> None:
        if task.storing or task.state in _TERMINAL:
            return
        if self._orphaned(task):
            await self._withdraw(task)
            return
        task.storing = True
        try:
            executions = [
                gateway_pb2.SignedExecution(assignment=a.envelope, result=a.result)
                for a in task.assignments
                if a.state == "submitted"
            ]
            try:
                await self.gateway.store(task.task_id, executions)
            except Unavailable as err:
                task.store_pending = True
                _log.warning("store_retry", task=task.task_id.hex(), error=err.reason)
                return
            except NoxError as err:
                task.store_pending = False
                await self._fail(task, err.reason, err.message, int(err.code.value[0]))
                return
            task.store_pending = False
            task.failure = None  # an earlier, retried failure is history now
            self._set_state(task, S.TASK_STATE_STORED)
            self.metrics.tasks.labels("stored").inc()
            _log.info("task_stored", task=task.task_id.hex())
            await self._settle(task, "ack")
        finally:
            task.storing = False

    # ------------------------------------------------------------------ endings

    async def _fail(self, task: Task, reason: str, detail: str, code: int) -> None:
        """Park the task's message with `reason`; the task is FAILED."""
        if task.failure is None or task.failure.reason != reason:
            task.failure = task_pb2.TaskFailure(reason=reason, code=code, message=detail[:256])
        self._set_state(task, S.TASK_STATE_FAILED)
        self.metrics.tasks.labels("failed").inc()
        self._cancel_all(task)
        await self._settle(task, "park")

    async def _withdraw(self, task: Task) -> None:
        orphaned = TransactionOrphaned("block reorganized away")
        task.failure = task_pb2.TaskFailure(
            reason=orphaned.reason, code=int(orphaned.code.value[0]), message=orphaned.message
        )
        self._set_state(task, S.TASK_STATE_WITHDRAWN)
        self.metrics.tasks.labels("withdrawn").inc()
        self._cancel_all(task)
        await self._settle(task, "park")

    async def _settle(self, task: Task, how: str) -> None:
        """Settle the task's queue message; on failure retried by the housekeeping loop."""
        lease = task.lease
        try:
            if how == "ack":
                await lease.ack()
            elif how == "term":
                await lease.term()
            else:
                failure = task.failure
                reason = failure.reason if failure is not None else "TASK_FAILED"
                detail = failure.message if failure is not None else ""
                await lease.park(reason, detail)
            task.ack_pending = False
        except QueueUnavailable:
            task.ack_pending = True
        except LeaseSettled:
            task.ack_pending = False

    def _cancel_all(self, task: Task) -> None:
        for a in task.assignments:
            if a.state == "active":
                a.state = "revoked"
                runner = self.runners.get(a.runner)
                if runner is not None:
                    runner.cancelled.add(task.task_id)
        self._discard_ready(task.task_id)

    def _revoke(self, task: Task, a: Assignment, cause: str) -> None:
        a.state = "revoked"
        runner = self.runners.get(a.runner)
        if runner is not None:
            runner.cancelled.add(task.task_id)
        self.metrics.reassignments.labels(cause).inc()
        _log.info("lease_revoked", task=task.task_id.hex(), runner=a.runner.hex(), cause=cause)
        self._requeue(task)

    def _requeue(self, task: Task) -> None:
        if task.state in _TERMINAL:
            return
        slots = self.settings.redundancy * self.settings.max_attempts
        if len(task.assignments) >= slots:
            # every attempt used: parked by the housekeeping loop once no lease is held
            task.exhausted = True
            self._discard_ready(task.task_id)
            return
        task.requeued_at = self.clock()
        if not any(a.state == "submitted" for a in task.assignments):
            self._set_state(task, S.TASK_STATE_QUEUED)
        if task.task_id not in self._ready:
            self._ready.append(task.task_id)
        self._changed.set()

    def _orphaned(self, task: Task) -> bool:
        if self.canonical is None:
            return False
        msg = task.spec.message
        current = self.canonical.block_hash(msg.block_number)
        return current is not None and current != msg.block_hash

    def _set_state(self, task: Task, state: int) -> None:
        task.state = state
        task.updated_at = self.clock()
        if state in _TERMINAL:
            self._finished(task)

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_interval)
            try:
                await self.tick()
            except QueueUnavailable as err:
                _log.warning("housekeeping_queue_unavailable", error=err.message)

    async def tick(self) -> None:
        """One round of lease expiry, runner loss, keep-alive and retries."""
        now = self.clock()
        for runner in list(self.runners.values()):
            if now - runner.last_seen > self.settings.runner_lost_after:
                self._drop_runner(runner.address, "runner_lost")
        if now - self._last_sweep >= self.settings.registry_sweep_interval:
            self._last_sweep = now
            self._sweep_registry(int(now))
        self._report_missing_producers(now)
        keep_every = self.consumer.settings.ack_wait / 3
        if self.canonical is not None:  # one batch for the blocks of the tasks in flight
            self.canonical.prefetch(
                t.spec.message.block_number for t in self.tasks.values() if t.state in _IN_FLIGHT
            )
        for task in list(self.tasks.values()):
            if task.state in _TERMINAL:
                if task.ack_pending:
                    how = "ack" if task.state == S.TASK_STATE_STORED else "park"
                    await self._settle(task, how)
                elif now - task.updated_at > self.settings.status_retention:
                    del self.tasks[task.task_id]
                continue
            if task.exhausted and not any(a.state == "active" for a in task.assignments):
                detail = f"no result after {len(task.assignments)} assignments"
                await self._fail(task, REASON_MAX_DELIVERIES, detail, 8)
                continue
            for a in task.assignments:
                if a.state == "active" and now >= a.lease_expires_at:
                    self._revoke(task, a, "lease_expired")
            never_taken = not task.assignments and not task.deferrals
            idle = never_taken and not self._dependencies.waiting(task.task_id)
            if idle and now - task.created_at > self.settings.lease_seconds:
                await self._release(task)
                continue
            if task.store_pending:
                await self._store(task)
            if now - task.last_progress >= keep_every and task.state not in _TERMINAL:
                task.last_progress = now
                with contextlib.suppress(QueueUnavailable, LeaseSettled):
                    await task.lease.progress()

    def _report_missing_producers(self, now: float) -> None:
        """Flag tasks whose inputs have been missing for `producer_missing_after` seconds
        (see dependencies.py) and set the gauge of those still waiting."""
        after = self.settings.producer_missing_after
        waiting = 0
        for task in self.tasks.values():
            if task.state in _TERMINAL or task.inputs_missing_since is None:
                continue
            if not task.producer_missing and now - task.inputs_missing_since >= after:
                task.producer_missing = True
                names = ",".join("0x" + h.hex() for h in task.missing)
                missing = ProducerMissing(
                    f"no producer after {int(now - task.inputs_missing_since)} s for input {names}"
                )
                task.failure = task_pb2.TaskFailure(
                    reason=missing.reason, code=int(missing.code.value[0]),
                    message=missing.message[:256],
                )  # fmt: skip
                _log.warning("producer_missing", task=task.task_id.hex(), handles=names)
            waiting += task.producer_missing
        self.metrics.producer_missing.set(waiting)

    async def _release(self, task: Task) -> None:
        """Hand a task no runner here took back to JetStream (another instance may have a
        runner for its operators); after max_deliver such rounds it is parked."""
        self._discard_ready(task.task_id)
        del self.tasks[task.task_id]
        self._finished(task)
        with contextlib.suppress(QueueUnavailable, LeaseSettled):
            await task.lease.nak(delay=self.settings.lease_seconds, detail="no capable runner")
        _log.info("task_released", task=task.task_id.hex())

    def _drop_runner(self, address: bytes, cause: str) -> None:
        self.runners.pop(address, None)
        self.metrics.runners.set(len(self.runners))
        for task in list(self.tasks.values()):
            for a in task.assignments:
                if a.runner == address and a.state == "active":
                    self._revoke(task, a, cause)

    def _sweep_registry(self, now: int) -> None:
        try:
            active = {bytes(n.address) for n in self.directory.active(ROLE_RUNNER, now)}
        except NoxError as err:
            _log.warning("registry_sweep_failed", error=err.reason)
            return
        for address in list(self.runners):
            if address not in active:
                self._drop_runner(address, "runner_deregistered")

    # ------------------------------------------------------------------ status

    def status(self, task_id: bytes) -> task_pb2.TaskStatus:
        task = self.tasks.get(task_id)
        if task is None:
            raise TaskNotFound("no such task here")
        msg = task.spec.message
        live = [a for a in task.assignments if a.state != "revoked"] or task.assignments[-1:]
        status = task_pb2.TaskStatus(
            task_id=task_id,
            state=task.state,  # type: ignore[arg-type]
            chain_id=msg.chain_id,
            transaction_hash=msg.transaction_hash,
            block_number=msg.block_number,
            operation_count=len(msg.operations),
            output_handles=list(task.spec.output_handles),
            attempts=len(task.assignments),
            runner_addresses=[a.runner for a in live],
            orchestrator_address=self.key.address,
            created_at=int(task.created_at),
            updated_at=int(task.updated_at),
            lease_expires_at=max(
                (a.lease_expires_at for a in task.assignments if a.state == "active"), default=0
            ),
        )
        if task.failure is not None:
            status.failure.CopyFrom(task.failure)
        return status
