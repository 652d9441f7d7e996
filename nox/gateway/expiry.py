"""Inputs that no transaction referenced expire and are deleted (issue 14, point 5).

EncryptInput is public: anyone can store inputs, and an input that no transaction ever
uses would otherwise stay forever. Each input is stored with `expires_at = created_at +
input_ttl_seconds`; a background sweep (`InputSweeper`) deletes inputs past it.

"Referenced" means, and only this keeps an input for good:

- served as an operand: a registered runner's GetOperands named it for an assignment's task
  (the orchestrator assigned a mined transaction that uses it), or
- persisted on-chain: at sweep time, the on-chain ACL makes its application or its owner a
  viewer (a contract validated the proof and kept the handle, `allow`, without computing on
  it yet). The sweep asks the ACL before deleting and keeps such an input.

The default time (6 hours) is longer than the on-chain input proof validity
(`NoxCompute.proofExpirationDuration`, 1 hour by default: a proof cannot be used later)
plus the processing lag up to the first GetOperands (ingestor confirmations, queueing,
orchestrator retries: minutes normally, 5 hours allowed). An operator who raises the
on-chain proof validity must raise `input_ttl_seconds` above it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from nox.errors import NoxError
from nox.gateway.context import AclView, GatewayContext

DEFAULT_INPUT_TTL_SECONDS = 6 * 3600
"""1 hour of on-chain proof validity plus 5 hours of processing lag (module docstring)."""

_log = logging.getLogger(__name__)


def _persisted(acl: AclView, handle: bytes, owner: bytes | None, app: bytes | None) -> bool:
    return any(acl.is_viewer(handle, who) for who in (app, owner) if who is not None)


async def sweep_once(ctx: GatewayContext, now: int, *, batch: int = 256) -> int:
    """Delete up to `batch` expired, unreferenced inputs; returns how many were deleted.

    Inputs the ACL shows persisted are marked referenced instead (kept for good). Inputs
    served since the last flush are marked first.
    """
    await ctx.referenced.flush(ctx.store)
    candidates = await ctx.store.expired_inputs(now, batch)
    keep: list[bytes] = []
    drop: list[bytes] = []
    for handle, owner, app in candidates:
        persisted = await asyncio.to_thread(_persisted, ctx.acl, handle, owner, app)
        (keep if persisted else drop).append(handle)
    if keep:
        await ctx.store.mark_referenced(keep)
    return await ctx.store.delete_expired_inputs(drop, now) if drop else 0


class InputSweeper:
    """Runs `sweep_once` every `interval` seconds, and flushes the referenced marks every
    `flush_interval`, until stopped (a gateway background task)."""

    def __init__(
        self,
        ctx: GatewayContext,
        *,
        interval: float,
        flush_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._ctx = ctx
        self._interval = interval
        self._flush_interval = min(flush_interval, interval)
        self._clock = clock or ctx.clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping in the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nox-gateway-input-sweep")

    async def stop(self) -> None:
        """Stop sweeping (a sweep in progress is cancelled), then write the pending marks."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._ctx.referenced.flush(self._ctx.store)
        except (NoxError, SQLAlchemyError, OSError) as err:
            _log.warning("could not write the referenced inputs (%s)", type(err).__name__)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._interval
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                if loop.time() < next_sweep:
                    await self._ctx.referenced.flush(self._ctx.store)
                    continue
                next_sweep = loop.time() + self._interval
                deleted = await sweep_once(self._ctx, self._clock())
                while deleted:  # a backlog: keep going, one batch at a time
                    deleted = await sweep_once(self._ctx, self._clock())
            except (NoxError, SQLAlchemyError, OSError, ValueError) as err:
                # the store or the chain is unavailable: retried at the next interval
                _log.warning("input expiry sweep failed (%s); retrying later", type(err).__name__)
