"""The gateway's persistent store: ciphertexts by handle and the tasks that published them.

SQLite by default (embedded devnet), PostgreSQL through psycopg 3 in production; the schema
is managed by alembic migrations (`nox/gateway/migrations/`) applied when the store opens.

    store = HandleStore.open(StoreSettings(url="postgresql+psycopg://.../nox"))
    store.put_input(record)                       # HandleExists on a duplicate
    store.publish_task(task_id, records)          # CREATED | UNCHANGED, or TaskConflict
    store.require(handles)                        # HandleNotFound names missing ones

`AsyncHandleStore` offers the same calls to asyncio code.
"""

from __future__ import annotations

from nox.gateway.store._async import AsyncHandleStore
from nox.gateway.store._engine import StoreSettings, create_store_engine, normalize_url
from nox.gateway.store._migrate import (
    SCRIPT_LOCATION,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from nox.gateway.store._models import HANDLES, METADATA, TASKS, HandleRow, TaskRow
from nox.gateway.store._records import (
    HandleRecord,
    HandleStatus,
    PublishOutcome,
    RowBinding,
    StoredHandle,
    TaskInfo,
    result_digest,
)
from nox.gateway.store._store import HandleStore

__all__ = [
    "HANDLES",
    "METADATA",
    "SCRIPT_LOCATION",
    "TASKS",
    "VERSION_TABLE",
    "AsyncHandleStore",
    "HandleRecord",
    "HandleRow",
    "HandleStatus",
    "HandleStore",
    "PublishOutcome",
    "RowBinding",
    "StoreSettings",
    "StoredHandle",
    "TaskInfo",
    "TaskRow",
    "alembic_config",
    "create_store_engine",
    "current_revision",
    "head_revision",
    "normalize_url",
    "result_digest",
    "upgrade",
]
