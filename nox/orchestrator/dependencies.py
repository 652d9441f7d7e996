"""Which tasks held by one orchestrator read results that other held tasks still compute.

Transactions arrive in chain order, so a task that reads an earlier transaction's result (a
token balance, a running total) is usually admitted while that transaction is still being
computed. Assigning it at once would only make its runner find the input missing; the
scheduler holds it instead until every producer held here is stored (or has failed), then
makes it ready. A producer held by another orchestrator instance is invisible here: that
case reaches the scheduler as a runner's HANDLE_NOT_FOUND and is retried with back-off.

A producer that never arrives (its message lost or suppressed) shows up the same way, so a
task whose inputs have been missing for `producer_missing_after` seconds is reported
(metric, log, GetTaskStatus: reason PRODUCER_MISSING while still queued) with the handles
`missing_inputs` names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["DependencyTracker", "missing_inputs"]

_HANDLE = re.compile(r"0x([0-9a-fA-F]{64})")


def missing_inputs(detail: str, inputs: Sequence[bytes]) -> list[bytes]:
    """The task's input handles a runner's failure detail names (the gateway's
    HANDLE_NOT_FOUND lists them as 0x-hex); all inputs when it names none of them."""
    named = {bytes.fromhex(h.lower()) for h in _HANDLE.findall(detail)}
    found = [h for h in inputs if h in named]
    return found or list(inputs)


class DependencyTracker:
    """Output handle -> unfinished producer task, and producer -> the tasks waiting on it."""

    def __init__(self) -> None:
        self._producers: dict[bytes, bytes] = {}
        self._waiting: dict[bytes, set[bytes]] = {}
        self._blocked_by: dict[bytes, set[bytes]] = {}

    def add(self, task_id: bytes, inputs: Iterable[bytes], outputs: Iterable[bytes]) -> bool:
        """Record a task; True when it must wait (some input is an unfinished task's output)."""
        blockers = {p for h in inputs if (p := self._producers.get(h)) is not None and p != task_id}
        for producer in blockers:
            self._waiting.setdefault(producer, set()).add(task_id)
        if blockers:
            self._blocked_by[task_id] = blockers
        for handle in outputs:
            self._producers[handle] = task_id
        return bool(blockers)

    def waiting(self, task_id: bytes) -> bool:
        """Whether `task_id` still waits for a producer."""
        return task_id in self._blocked_by

    def finish(self, task_id: bytes, outputs: Iterable[bytes]) -> list[bytes]:
        """`task_id` is stored, failed or gone: forget it; the tasks no longer waiting."""
        for handle in outputs:
            if self._producers.get(handle) == task_id:
                del self._producers[handle]
        self._blocked_by.pop(task_id, None)
        released = []
        for waiting_id in sorted(self._waiting.pop(task_id, ())):
            blockers = self._blocked_by.get(waiting_id)
            if blockers is None:
                continue
            blockers.discard(task_id)
            if not blockers:
                del self._blocked_by[waiting_id]
                released.append(waiting_id)
        return released

    def __len__(self) -> int:
        """Output handles of unfinished tasks being tracked."""
        return len(self._producers)
