"""Typed, frozen settings of one orchestrator instance (passed down; nothing global)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nox.orchestrator.exceptions import InvalidOrchestratorSettings
from nox.v1 import task_pb2


@dataclass(frozen=True)
class TaskLimitSettings:
    """Per-task limits the orchestrator declares in every assignment (TaskLimits)."""

    max_operations: int = 256
    max_input_handles: int = 512
    max_output_handles: int = 768
    max_ciphertext_bytes: int = 64 * 1024
    max_execution_seconds: int = 60

    def to_proto(self) -> task_pb2.TaskLimits:
        return task_pb2.TaskLimits(
            max_operations=self.max_operations,
            max_input_handles=self.max_input_handles,
            max_output_handles=self.max_output_handles,
            max_ciphertext_bytes=self.max_ciphertext_bytes,
            max_execution_seconds=self.max_execution_seconds,
        )


@dataclass(frozen=True)
class OrchestratorSettings:
    """Scheduling policy. Times are seconds of the injected clock."""

    lease_seconds: int = 30
    """Length of a task lease; afterwards the task is reassigned."""
    heartbeat_interval: int = 5
    """Seconds between a runner's heartbeats (told to runners)."""
    runner_lost_after: float = 15.0
    """A runner silent this long is lost: its leases are revoked and reassigned."""
    redundancy: int = 1
    """Runners per task (k); with k > 1 results are stored only when all value tags agree."""
    max_attempts: int = 5
    """Assignments of one task (per runner slot) before it is parked (MAX_DELIVERIES_EXCEEDED)."""
    retry_wait: float = 120.0
    """How long after its arrival a task is retried, with back-off and without spending its
    attempts, while runners report an input not stored yet (the transaction producing it is
    computed elsewhere) or the gateway or KMS unavailable (e.g. restarting); afterwards a
    missing input parks the task and unavailability counts against `max_attempts`."""
    max_claim_wait: float = 20.0
    """Longest a ClaimTasks long poll is held open."""
    producer_missing_after: float = 60.0
    """A task whose runners have found an input missing for this long is reported: gauge
    nox_orchestrator_producer_missing, a `producer_missing` log line naming the task and the
    handles, and GetTaskStatus state QUEUED with failure reason PRODUCER_MISSING. Keep it
    below `retry_wait` (after which the task is parked with the runner's reason)."""
    fetch_wait: float = 1.0
    """Longest one JetStream fetch waits inside a long poll."""
    tick_interval: float = 0.2
    """Period of the housekeeping loop (lease expiry, runner loss, keep-alive, retries)."""
    registry_sweep_interval: float = 10.0
    """Period of the check that pooled runners are still active in the registry."""
    response_ttl: int = 60
    """Validity of the orchestrator's signed answers."""
    assignment_slack: int = 60
    """An assignment envelope stays valid this long after its lease (for StoreResults)."""
    max_skew: int = 30
    max_envelope_ttl: int = 3600
    transaction_max_ttl: int = 8 * 86_400
    """Longest validity accepted on an ingestor's TransactionMessage envelope (stream age)."""
    status_retention: float = 3600.0
    """How long finished tasks stay queryable with GetTaskStatus."""
    limits: TaskLimitSettings = field(default_factory=TaskLimitSettings)

    def __post_init__(self) -> None:
        if self.lease_seconds < 1 or self.heartbeat_interval < 1:
            raise InvalidOrchestratorSettings("lease and heartbeat interval must be >= 1 s")
        if not 1 <= self.redundancy <= 16:
            raise InvalidOrchestratorSettings("redundancy must be in 1..16")
        if self.max_attempts < 1:
            raise InvalidOrchestratorSettings("max_attempts must be >= 1")
        if self.lease_seconds + self.assignment_slack > self.max_envelope_ttl:
            raise InvalidOrchestratorSettings("lease + slack must fit the envelope window")
        for name in (
            "runner_lost_after",
            "max_claim_wait",
            "fetch_wait",
            "tick_interval",
            "retry_wait",
            "producer_missing_after",
        ):
            if not getattr(self, name) > 0:
                raise InvalidOrchestratorSettings(f"{name} must be positive")
