"""Pieces of the full-stack tests (real runner, gateway, KMS; chain through the runner
suite's ChainRegistry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nox.orchestrator import GrpcGatewayStore
from nox.orchestrator.directory import ActiveNode
from nox.v1 import gateway_pb2


class NoAcl:
    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return False

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return False


class ChainDirectory:
    """The registry view behind the chain's lock (the agents use it from worker threads)."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    def require(self, address: bytes, role: int, now: int) -> object:
        return self._chain.directory.require(address, role, now)

    def active(self, role: int, now: int) -> Sequence[ActiveNode]:
        with self._chain.lock:
            return list(self._chain.view.active(role, now))


class Recording:
    """The real GatewayStore, remembering what it forwarded."""

    def __init__(self, inner: GrpcGatewayStore) -> None:
        self.inner = inner
        self.forwarded: list[gateway_pb2.SignedExecution] = []

    async def store(
        self, task_id: bytes, executions: Sequence[gateway_pb2.SignedExecution]
    ) -> gateway_pb2.StoreResultsResponsePayload:
        answer = await self.inner.store(task_id, executions)
        self.forwarded.extend(executions)
        return answer
