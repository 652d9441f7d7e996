"""The orchestrator (DESIGN §8): queued transactions -> signed, leased tasks -> stored results.

- `server.OrchestratorNode`: one instance (queue consumer, scheduler, gRPC service);
- `scheduler.Scheduler`: runner pool, leases, reassignment, redundancy, storing, parking;
- `service.OrchestratorServicer`: OrchestratorService over signed envelopes;
- `tasks.TransactionDecoder`: verify the ingestor's envelope, derive the task;
- `gateway.GrpcGatewayStore`: StoreResults to the gateway; `directory`: chain protocols.
"""

from __future__ import annotations

from nox.orchestrator.config import OrchestratorSettings, TaskLimitSettings
from nox.orchestrator.directory import CanonicalChain, NodeDirectory, Serialized
from nox.orchestrator.gateway import GatewayStore, GrpcGatewayStore
from nox.orchestrator.scheduler import Scheduler
from nox.orchestrator.server import OrchestratorNode
from nox.orchestrator.service import SERVICE_NAME, OrchestratorServicer
from nox.orchestrator.tasks import TaskSpec, TransactionDecoder, task_id_for

__all__ = [
    "SERVICE_NAME",
    "CanonicalChain",
    "GatewayStore",
    "GrpcGatewayStore",
    "NodeDirectory",
    "OrchestratorNode",
    "OrchestratorServicer",
    "OrchestratorSettings",
    "Scheduler",
    "Serialized",
    "TaskLimitSettings",
    "TaskSpec",
    "TransactionDecoder",
    "task_id_for",
]
