"""The alembic migrations: from an empty database to head, idempotent, matching the models."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from nox.gateway.store import (
    METADATA,
    VERSION_TABLE,
    HandleRecord,
    HandleStore,
    StoreSettings,
    alembic_config,
    create_store_engine,
    current_revision,
    head_revision,
    upgrade,
)

RecordFactory = Callable[..., HandleRecord]
GATEWAY_TABLES = {"gateway_tasks", "gateway_handles"}


def _tables(settings: StoreSettings) -> set[str]:
    engine = create_store_engine(settings)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_the_models_schema(
    settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may depend on the working directory
    engine = create_store_engine(settings)
    try:
        assert current_revision(engine) is None
        assert _tables(settings) == set()
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(settings) == GATEWAY_TABLES | {VERSION_TABLE}
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: (
                        kind != "table" or name in GATEWAY_TABLES
                    ),
                },
            )
            assert compare_metadata(ctx, METADATA) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_keeps_data(
    settings: StoreSettings, new_record: RecordFactory
) -> None:
    store = HandleStore.open(settings)
    try:
        record = new_record()
        store.put_input(record)
        upgrade(store.engine)
        upgrade(store.engine)
        assert current_revision(store.engine) == head_revision()
        assert store.get([record.handle])[record.handle].record == record
    finally:
        store.close()


def test_concurrent_starts_on_an_empty_database(settings: StoreSettings) -> None:
    n = 4
    barrier = threading.Barrier(n, timeout=60)

    def start(_: int) -> str | None:
        barrier.wait()
        store = HandleStore.open(settings)
        try:
            return current_revision(store.engine)
        finally:
            store.close()

    with ThreadPoolExecutor(n) as pool:
        revisions = list(pool.map(start, range(n)))
    assert revisions == [head_revision()] * n


def test_downgrade_to_base_removes_the_schema(settings: StoreSettings) -> None:
    engine = create_store_engine(settings)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert current_revision(engine) is None
        assert _tables(settings) & GATEWAY_TABLES == set()
    finally:
        engine.dispose()


def test_a_store_opened_without_migrating_does_not_touch_the_schema(
    settings: StoreSettings,
) -> None:
    store = HandleStore.open(
        StoreSettings(url=settings.url, pool_size=settings.pool_size, migrate=False)
    )
    try:
        assert current_revision(store.engine) is None
    finally:
        store.close()
    assert _tables(settings) == set()
