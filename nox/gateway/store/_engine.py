"""SQLAlchemy engines for the store: SQLite (embedded default) and PostgreSQL (production).

SQLite: Python's sqlite3 module starts transactions itself, only before DML and always
DEFERRED; that makes DDL non-transactional and lets two writers that read first deadlock
into SQLITE_BUSY. Following SQLAlchemy's documented recipe, we switch that off and emit
BEGIN ourselves: DEFERRED for reads, IMMEDIATE for writes (a write transaction takes the
write lock at its start and waits for it up to the busy timeout). WAL journaling lets
readers proceed while a writer works and always see the last committed state.

PostgreSQL: psycopg 3, READ COMMITTED (each statement sees what was committed before it,
which the publication protocol relies on). No pre-ping (it would cost a round trip per
call): the store retries a call once on a connection found dead before anything was
committed, and SQLAlchemy then drops the whole stale pool.

Both hide statement parameters from logs and error messages (`hide_parameters`): database
errors end up in tracebacks, and stored values have no business there.

The engine is an ordinary SQLAlchemy engine: another component keeping state in the same
database (the replay-nonce cache, for instance) can use it, or one made from the same URL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from nox.errors import InvalidArgument
from nox.files import private_file

# Execution option read by the SQLite "begin" hook: which BEGIN to emit.
_SQLITE_BEGIN = "nox_sqlite_begin"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where and how the gateway store keeps its data."""

    url: str = "sqlite:///nox-gateway.sqlite3"
    """SQLAlchemy URL: `sqlite:///path` (embedded) or `postgresql+psycopg://...`
    (`postgresql://` is taken to mean psycopg 3). For PostgreSQL, a schema other than
    `public` can be chosen with `?options=-csearch_path%3Dmyschema`. `sqlite://` is a
    private in-memory database on one connection: for tests, one thread at a time."""
    pool_size: int = 8
    """Connections kept open (PostgreSQL and SQLite files); also the number of worker
    threads of the async facade."""
    max_overflow: int = 4
    """Extra connections allowed under bursts (PostgreSQL)."""
    max_batch: int = 4096
    """Most handles one lookup or publication may name (one statement, one snapshot)."""
    busy_timeout_s: float = 30.0
    """SQLite: how long a writer waits for the write lock before giving up."""
    migrate: bool = True
    """Apply the schema migrations when the store opens."""
    write_retries: int = 5
    """How often a write aborted by a deadlock or serialization failure is retried."""


def normalize_url(url: str | URL) -> URL:
    """Parse `url`, map bare `postgresql://` to psycopg 3, reject unsupported databases."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    backend = u.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidArgument(f"unsupported database {backend!r} (use sqlite or postgresql)")
    if backend == "postgresql" and u.get_driver_name() != "psycopg":
        raise InvalidArgument("PostgreSQL is used through psycopg 3: postgresql+psycopg://...")
    return u


def is_memory_sqlite(url: URL) -> bool:
    """True for a private in-memory SQLite database (one shared connection)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_store_engine(settings: StoreSettings) -> Engine:
    """An engine configured as the module docstring explains."""
    url = normalize_url(settings.url)
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            isolation_level="READ COMMITTED",
            hide_parameters=True,
        )
    connect_args: dict[str, Any] = {"timeout": settings.busy_timeout_s, "check_same_thread": False}
    if is_memory_sqlite(url):
        engine = create_engine(
            url, connect_args=connect_args, poolclass=StaticPool, hide_parameters=True
        )
    else:
        assert url.database is not None
        private_file(Path(url.database).expanduser())  # 0600 before SQLite opens it
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_size=settings.pool_size,
            max_overflow=0,
            hide_parameters=True,
        )
    memory = is_memory_sqlite(url)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see on_begin)
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                _enable_wal(cursor, time.monotonic() + settings.busy_timeout_s)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(settings.busy_timeout_s * 1000)}")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine


def _enable_wal(cursor: Any, deadline: float) -> None:
    # WAL is a persistent property of the file, but switching a new file to it needs an
    # exclusive lock, and SQLite answers "database is locked" at once, without waiting for
    # the busy timeout, when several connections open a new file at the same moment.
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: BEGIN IMMEDIATE on SQLite, a plain BEGIN elsewhere.

    Commits when the block ends normally, rolls back on any exception.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn
