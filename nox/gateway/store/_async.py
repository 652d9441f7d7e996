"""The store for asyncio code (the grpc.aio gateway servicer).

Why a synchronous engine in worker threads rather than SQLAlchemy's asyncio extension:
- the asyncio extension needs an async driver per database (aiosqlite for SQLite; asyncpg
  or psycopg's async mode for PostgreSQL) plus greenlet, i.e. new dependencies and a second
  code path, while the sync engine serves both backends with what is already pinned;
- every store call is one short transaction of one or two statements, which blocks on I/O
  in the driver where the GIL is released, so a thread per in-flight call costs little (a
  few tens of microseconds of hand-off against a database round trip of ~0.1-1 ms);
- the executor has exactly as many threads as the connection pool has connections, so a
  worker never waits for a connection inside the pool and a burst queues in the executor.

Each method has the semantics of the same-named `HandleStore` method.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from nox.gateway.store._engine import StoreSettings, is_memory_sqlite, normalize_url
from nox.gateway.store._records import (
    HandleRecord,
    HandleStatus,
    PublishOutcome,
    StoredHandle,
    TaskInfo,
)
from nox.gateway.store._store import HandleStore

_P = ParamSpec("_P")
_T = TypeVar("_T")


class AsyncHandleStore:
    """Awaitable facade over a `HandleStore`, running its calls on a dedicated thread pool."""

    def __init__(self, store: HandleStore) -> None:
        self._store = store
        settings = store.settings
        # An in-memory SQLite database is one shared connection: one thread at a time.
        single = is_memory_sqlite(normalize_url(settings.url))
        self._executor = ThreadPoolExecutor(
            max_workers=1 if single else max(1, settings.pool_size),
            thread_name_prefix="nox-gateway-store",
        )

    @classmethod
    async def open(cls, settings: StoreSettings) -> AsyncHandleStore:
        """Open (and migrate) the store without blocking the event loop."""
        store = await asyncio.to_thread(HandleStore.open, settings)
        return cls(store)

    @property
    def sync(self) -> HandleStore:
        """The synchronous store underneath (for scripts and tests)."""
        return self._store

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (shareable with other stores of the same database)."""
        return self._store.engine

    async def close(self) -> None:
        """Wait for running calls, then close the connections."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        await asyncio.to_thread(self._store.close)

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def mark_referenced(self, handles: Iterable[bytes]) -> int:
        """See `HandleStore.mark_referenced`."""
        return await self._run(self._store.mark_referenced, handles)

    async def expired_inputs(
        self, now: int, limit: int
    ) -> list[tuple[bytes, bytes | None, bytes | None]]:
        """See `HandleStore.expired_inputs`."""
        return await self._run(self._store.expired_inputs, now, limit)

    async def delete_expired_inputs(self, handles: Iterable[bytes], now: int) -> int:
        """See `HandleStore.delete_expired_inputs`."""
        return await self._run(self._store.delete_expired_inputs, handles, now)

    async def put_input(self, record: HandleRecord, *, expires_after: int | None = None) -> int:
        """See `HandleStore.put_input`."""
        return await self._run(self._store.put_input, record, expires_after=expires_after)

    async def put_inputs(self, records: Sequence[HandleRecord]) -> int:
        """See `HandleStore.put_inputs`."""
        return await self._run(self._store.put_inputs, records)

    async def publish_task(
        self, task_id: bytes, records: Sequence[HandleRecord], *, evidence: bytes | None = None
    ) -> PublishOutcome:
        """See `HandleStore.publish_task`."""
        return await self._run(self._store.publish_task, task_id, records, evidence=evidence)

    async def get(self, handles: Iterable[bytes]) -> dict[bytes, StoredHandle]:
        """See `HandleStore.get`."""
        return await self._run(self._store.get, list(handles))

    async def require(self, handles: Sequence[bytes]) -> list[StoredHandle]:
        """See `HandleStore.require`."""
        return await self._run(self._store.require, handles)

    async def status(self, handles: Iterable[bytes]) -> dict[bytes, HandleStatus]:
        """See `HandleStore.status`."""
        return await self._run(self._store.status, list(handles))

    async def task(self, task_id: bytes) -> TaskInfo | None:
        """See `HandleStore.task`."""
        return await self._run(self._store.task, task_id)

    async def count(self) -> int:
        """See `HandleStore.count`."""
        return await self._run(self._store.count)
