"""The orchestrator's in-memory records: runners, assignments, tasks, and its metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from nox.orchestrator.tasks import TaskSpec
from nox.queue import Lease
from nox.v1 import task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = ["Assignment", "OrchestratorMetrics", "RunnerState", "Task"]


class OrchestratorMetrics:
    """Prometheus metrics of one orchestrator, on a registry the service passes in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.assignments = Counter(
            "nox_orchestrator_assignments", "Task assignments made.", registry=registry
        )
        self.reassignments = Counter(
            "nox_orchestrator_reassignments",
            "Assignments revoked and handed to another runner, by cause.",
            ("cause",),
            registry=registry,
        )
        self.tasks = Counter(
            "nox_orchestrator_tasks_finished",
            "Tasks finished, by final state.",
            ("state",),
            registry=registry,
        )
        self.disagreements = Counter(
            "nox_orchestrator_disagreements",
            "Redundant executions whose value tags differed (runners flagged).",
            registry=registry,
        )
        self.runners = Gauge("nox_orchestrator_runners", "Runners in the pool.", registry=registry)
        self.producer_missing = Gauge(
            "nox_orchestrator_producer_missing",
            "Queued tasks whose input has had no producer for producer_missing_after seconds.",
            registry=registry,
        )


@dataclass
class RunnerState:
    """A runner as its heartbeats describe it."""

    address: bytes
    capacity: int
    supported: frozenset[int]
    last_seen: float
    cancelled: set[bytes] = field(default_factory=set)
    """Task ids to tell the runner to abandon at its next heartbeat."""
    flagged: int = 0
    """Disagreements this runner took part in."""


@dataclass
class Assignment:
    """One runner's lease on one task slot."""

    runner: bytes
    attempt: int
    envelope: SignedEnvelope
    hash: bytes
    assigned_at: int
    lease_expires_at: int
    state: str = "active"  # active | submitted | revoked | failed
    result: SignedEnvelope | None = None
    tags: tuple[bytes, ...] = ()


@dataclass
class Task:
    """A transaction being processed by this instance."""

    spec: TaskSpec
    lease: Lease[TaskSpec]
    state: int
    created_at: float
    updated_at: float
    assignments: list[Assignment] = field(default_factory=list)
    failure: task_pb2.TaskFailure | None = None
    storing: bool = False
    exhausted: bool = False
    requeued_at: float = 0.0
    store_pending: bool = False
    ack_pending: bool = False
    last_progress: float = 0.0
    not_before: float = 0.0
    """Not assigned before this time (a retry after an input was not stored yet)."""
    deferrals: int = 0
    inputs_missing_since: float | None = None
    """When a runner first found an input not stored (reset when the task ends)."""
    missing: tuple[bytes, ...] = ()
    """The input handles the last such failure named."""
    producer_missing: bool = False
    """Reported as PRODUCER_MISSING (the gauge counts these while they are not final)."""
    """Times the task was put back without spending an attempt (input not stored yet, gateway
    or KMS unavailable)."""

    @property
    def task_id(self) -> bytes:
        return self.spec.task_id

    def live(self) -> list[Assignment]:
        """Assignments of the current round that count (held or submitted)."""
        return [a for a in self.assignments if a.state in ("active", "submitted")]
