"""The gateway's handle store (synchronous core; `AsyncHandleStore` wraps it for grpc.aio).

Guarantees, on SQLite and PostgreSQL alike, from the database and not from Python locks:
- A stored handle is never overwritten: inputs are inserted with ON CONFLICT DO NOTHING
  RETURNING, and a handle that was already there is reported, the stored row untouched.
- One task's outputs are stored in one transaction together with the task's row, so a
  reader (every lookup is one statement, hence one snapshot) sees all of them or none.
- Publication is idempotent. The first statement of a publication inserts the task row
  with ON CONFLICT DO NOTHING: of two racing publications of one task, the second waits on
  the primary key until the first commits, then finds the row and compares digests of the
  (handle, value tag) pairs: equal means UNCHANGED, different means TASK_CONFLICT. Output
  handles that exist for another reason (an input, another task) make the plain INSERT of
  the handles fail on their primary key; the transaction is rolled back and HANDLE_EXISTS
  names them. Handles are inserted in sorted order so concurrent publications lock rows in
  one order; a deadlock or serialization failure the database still reports is retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    Row,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from nox.gateway.exceptions import (
    BatchTooLarge,
    HandleExists,
    HandleNotFound,
    InvalidRecord,
    StoreUnavailable,
    TaskConflict,
)
from nox.gateway.store._engine import StoreSettings, create_store_engine, write_transaction
from nox.gateway.store._migrate import upgrade
from nox.gateway.store._models import HANDLES, TASKS
from nox.gateway.store._records import (
    HANDLE_SIZE,
    HandleRecord,
    HandleStatus,
    PublishOutcome,
    RowBinding,
    StoredHandle,
    TaskInfo,
    check_task_id,
    result_digest,
)

# SQLSTATEs after which a write transaction is simply retried (PostgreSQL).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_MAX_NAMED = 8  # handles named in one error's message and metadata
_T = TypeVar("_T")
# Stands for a stored binding that does not even parse: it never verifies.
_MALFORMED = RowBinding(bytes(32), bytes(65))

_RECORD_COLUMNS = (
    HANDLES.c.handle,
    HANDLES.c.ciphertext,
    HANDLES.c.ephemeral_public_key,
    HANDLES.c.nonce,
    HANDLES.c.value_tag,
    HANDLES.c.owner,
    HANDLES.c.application,
    HANDLES.c.origin_task,
    HANDLES.c.created_at,
    HANDLES.c.expires_at,
    HANDLES.c.binding_salt,
    HANDLES.c.binding_signature,
    HANDLES.c.binding_proof,
    HANDLES.c.binding_key_proof,
)
_STATUS_COLUMNS = (
    HANDLES.c.handle,
    HANDLES.c.type_code,
    HANDLES.c.chain_id,
    HANDLES.c.origin_task,
    HANDLES.c.created_at,
)


def _name(handles: Iterable[bytes]) -> str:
    listed = sorted(handles)
    text = ",".join("0x" + h.hex() for h in listed[:_MAX_NAMED])
    return text + (f",... ({len(listed)} in all)" if len(listed) > _MAX_NAMED else "")


def _is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _stored(row: Row[*tuple[Any, ...]]) -> StoredHandle:
    # Both drivers return BLOB/BYTEA as bytes; the record re-checks every length anyway.
    handle, ciphertext, k, nonce, tag, owner, application, origin, created_at, expires = row[:10]
    record = HandleRecord(
        handle, ciphertext, k, nonce, tag, owner, application, _binding(*row[10:])
    )
    return StoredHandle(
        record=record, origin_task=origin, created_at=created_at, expires_at=expires
    )


def _binding(salt: Any, signature: Any, proof: Any, key_proof: Any) -> RowBinding | None:
    """The row's binding, or None when it has none. A malformed one (a writer's doing) is
    kept as found, unchecked lengths and all, for the binding check to refuse."""
    if salt is None or signature is None:
        return None
    proof = bytes(proof or b"")
    siblings = tuple(proof[i : i + 32] for i in range(0, len(proof), 32))
    try:
        return RowBinding(bytes(salt), bytes(signature), siblings, bytes(key_proof or b""))
    except InvalidRecord:
        return _MALFORMED


class HandleStore:
    """Ciphertexts by handle, and the tasks that published them (see the module docstring).

    Thread-safe: every call takes a pooled connection of its own.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: StoreSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._settings = settings or StoreSettings()
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"
        # PostgreSQL reads are single statements (or, in `task`, statements over rows that
        # never change once committed): autocommit spares the BEGIN/ROLLBACK round trips.
        # SQLite keeps its explicit read transaction (see _engine).
        self._read_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._pg else engine
        )

    @classmethod
    def open(
        cls, settings: StoreSettings, *, clock: Callable[[], float] = time.time
    ) -> HandleStore:
        """Create the engine for `settings.url` and, unless disabled, migrate to head."""
        engine = create_store_engine(settings)
        try:
            if settings.migrate:
                upgrade(engine)
        except OperationalError as exc:
            engine.dispose()
            raise StoreUnavailable("cannot reach the gateway database") from exc
        return cls(engine, settings=settings, clock=clock)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (shareable with other stores of the same database)."""
        return self._engine

    @property
    def settings(self) -> StoreSettings:
        """The settings the store was opened with."""
        return self._settings

    def close(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()

    # ---- writes -------------------------------------------------------------------------

    def put_input(self, record: HandleRecord, *, expires_after: int | None = None) -> int:
        """Store a user input; return its creation time (Unix seconds).

        With `expires_after`, the input is deleted by `delete_expired_inputs` that many
        seconds after its creation unless a task references it first (`mark_referenced`).
        Raises HandleExists (and changes nothing) when the handle is stored already.
        """
        now = int(self._clock())
        row = self._row(record, origin_task=None, now=now)
        if expires_after is not None:
            row["expires_at"] = now + expires_after
        stmt = self._insert_ignoring_conflicts(HANDLES).values(row).returning(HANDLES.c.handle)
        if self._write(lambda conn: conn.execute(stmt).first()) is None:
            raise HandleExists(
                f"handle 0x{record.handle.hex()} is stored already",
                metadata={"handles": "0x" + record.handle.hex()},
            )
        return now

    def put_inputs(self, records: Sequence[HandleRecord]) -> int:
        """Store several user inputs at once, all or none; return their creation time.

        Raises HandleExists naming the handles that were stored already (nothing is stored).
        """
        handles = self._distinct_handles(records)
        now = int(self._clock())
        if not records:
            return now
        rows = self._rows(records, origin_task=None, now=now)
        try:
            self._write(lambda conn: conn.execute(insert(HANDLES), rows))
        except IntegrityError as exc:
            self._raise_existing(handles, exc)
        return now

    def publish_task(
        self, task_id: bytes, records: Sequence[HandleRecord], *, evidence: bytes | None = None
    ) -> PublishOutcome:
        """Store all outputs of one task atomically (DESIGN §7, §8).

        Returns CREATED when this call stored them, UNCHANGED when the same task was stored
        before with the same handles and value tags (nothing is written then). Raises
        TaskConflict when the task was stored with other outputs or tags, HandleExists when
        an output handle exists for another reason; in both cases nothing changes.
        `evidence` (for instance the signed result as received) is kept for audits.
        """
        check_task_id(task_id)
        if not records:
            raise InvalidRecord("a task publishes at least one handle")
        handles = self._distinct_handles(records)
        digest = result_digest(records)
        now = int(self._clock())
        rows = self._rows(records, origin_task=task_id, now=now)
        task_stmt = (
            self._insert_ignoring_conflicts(TASKS)
            .values(
                task_id=task_id,
                result_digest=digest,
                handle_count=len(rows),
                stored_at=now,
                evidence=evidence,
            )
            .returning(TASKS.c.task_id)
        )

        def work(conn: Connection) -> PublishOutcome:
            if conn.execute(task_stmt).first() is not None:
                conn.execute(insert(HANDLES), rows)
                return PublishOutcome.CREATED
            # The task row exists: committed by an earlier (or a racing, now finished)
            # publication, together with all its outputs.
            stored = conn.execute(
                select(TASKS.c.result_digest).where(TASKS.c.task_id == task_id)
            ).scalar_one()
            if bytes(stored) == digest:
                return PublishOutcome.UNCHANGED
            raise TaskConflict(
                f"task 0x{task_id.hex()} was stored before with other outputs",
                metadata={"task_id": "0x" + task_id.hex()},
            )

        try:
            return self._write(work)
        except IntegrityError as exc:
            self._raise_existing(handles, exc)

    # ---- reads --------------------------------------------------------------------------

    def get(self, handles: Iterable[bytes]) -> dict[bytes, StoredHandle]:
        """The stored records among `handles` (absent ones are simply missing), one snapshot."""
        wanted = self._lookup_keys(handles)
        if not wanted:
            return {}
        stmt = select(*_RECORD_COLUMNS).where(self._handle_in(wanted))
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return {row.handle: _stored(row) for row in rows}

    def require(self, handles: Sequence[bytes]) -> list[StoredHandle]:
        """The records of `handles` in the order given; HandleNotFound names missing ones."""
        found = self.get(handles)
        missing = {h for h in handles if h not in found}
        if missing:
            raise HandleNotFound(
                f"not stored: {_name(missing)}", metadata={"handles": _name(missing)}
            )
        return [found[h] for h in handles]

    def scan(self, *, after: bytes = b"", limit: int = 500) -> list[StoredHandle]:
        """Up to `limit` stored records with a handle above `after`, in handle order (audits
        page through the whole store with it)."""
        stmt = (
            select(*_RECORD_COLUMNS)
            .where(HANDLES.c.handle > after)
            .order_by(HANDLES.c.handle)
            .limit(limit)
        )
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_stored(row) for row in rows]

    def status(self, handles: Iterable[bytes]) -> dict[bytes, HandleStatus]:
        """Existence metadata (type, chain, origin, time) of the stored ones among `handles`."""
        wanted = self._lookup_keys(handles)
        if not wanted:
            return {}
        stmt = select(*_STATUS_COLUMNS).where(self._handle_in(wanted))
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return {
            bytes(row.handle): HandleStatus(
                handle=bytes(row.handle),
                type_code=int(row.type_code),
                chain_id=int(row.chain_id),
                origin_task=None if row.origin_task is None else bytes(row.origin_task),
                created_at=int(row.created_at),
            )
            for row in rows
        }

    def task(self, task_id: bytes) -> TaskInfo | None:
        """A published task and its output handles, or None."""
        check_task_id(task_id)
        return self._read(lambda conn: _task(conn, task_id))

    def count(self) -> int:
        """How many handles are stored (metrics, benchmarks)."""
        stmt = select(func.count()).select_from(HANDLES)
        return int(self._read(lambda conn: conn.execute(stmt).scalar_one()))

    # ---- input expiry (nox/gateway/expiry.py) --------------------------------------------

    def mark_referenced(self, handles: Iterable[bytes]) -> int:
        """Keep these inputs for good (a task referenced them); returns how many changed."""
        wanted = self._lookup_keys(handles)
        if not wanted:
            return 0
        stmt = (
            update(HANDLES)
            .where(self._handle_in(wanted), HANDLES.c.expires_at.is_not(None))
            .values(expires_at=None)
        )
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))

    def expired_inputs(
        self, now: int, limit: int
    ) -> list[tuple[bytes, bytes | None, bytes | None]]:
        """Up to `limit` (handle, owner, application) of inputs past their expiry at `now`."""
        stmt = (
            select(HANDLES.c.handle, HANDLES.c.owner, HANDLES.c.application)
            .where(HANDLES.c.expires_at < now)
            .order_by(HANDLES.c.expires_at)
            .limit(min(limit, self._settings.max_batch))
        )
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [(bytes(r[0]), _opt(r[1]), _opt(r[2])) for r in rows]

    def delete_expired_inputs(self, handles: Iterable[bytes], now: int) -> int:
        """Delete these inputs if they are still unreferenced and expired at `now` (a task
        that referenced one meanwhile keeps it); returns how many were deleted."""
        wanted = self._lookup_keys(handles)
        if not wanted:
            return 0
        stmt = delete(HANDLES).where(
            self._handle_in(wanted),
            HANDLES.c.expires_at < now,
            HANDLES.c.origin_task.is_(None),
        )
        return int(self._write(lambda conn: conn.execute(stmt).rowcount))

    # ---- helpers ------------------------------------------------------------------------

    def _rows(
        self, records: Sequence[HandleRecord], *, origin_task: bytes | None, now: int
    ) -> list[dict[str, Any]]:
        # Sorted by handle: concurrent transactions then lock index entries in one order.
        rows = [self._row(r, origin_task=origin_task, now=now) for r in records]
        rows.sort(key=lambda r: r["handle"])
        return rows

    @staticmethod
    def _row(record: HandleRecord, *, origin_task: bytes | None, now: int) -> dict[str, Any]:
        if not isinstance(record, HandleRecord):
            raise InvalidRecord("expected a HandleRecord")
        # type_code and chain_id are copies of handle fields, kept as columns for queries.
        return {
            "handle": record.handle,
            "ciphertext": record.ciphertext,
            "ephemeral_public_key": record.ephemeral_public_key,
            "nonce": record.nonce,
            "type_code": record.type_code,
            "chain_id": record.chain_id,
            "value_tag": record.value_tag,
            "origin_task": origin_task,
            "owner": record.owner,
            "application": record.application,
            "created_at": now,
            "binding_salt": None if record.binding is None else record.binding.salt,
            "binding_signature": None if record.binding is None else record.binding.signature,
            "binding_proof": None if record.binding is None else b"".join(record.binding.proof),
            "binding_key_proof": None
            if record.binding is None or not record.binding.key_proof
            else record.binding.key_proof,
        }

    def _distinct_handles(self, records: Sequence[HandleRecord]) -> set[bytes]:
        if len(records) > self._settings.max_batch:
            raise BatchTooLarge(f"{len(records)} records (at most {self._settings.max_batch})")
        if not all(isinstance(r, HandleRecord) for r in records):
            raise InvalidRecord("expected HandleRecord objects")
        handles = {r.handle for r in records}
        if len(handles) != len(records):
            raise InvalidRecord("the same handle appears twice")
        return handles

    def _lookup_keys(self, handles: Iterable[bytes]) -> list[bytes]:
        wanted = set(handles)
        if len(wanted) > self._settings.max_batch:
            raise BatchTooLarge(f"{len(wanted)} handles (at most {self._settings.max_batch})")
        for h in wanted:
            if not isinstance(h, bytes) or len(h) != HANDLE_SIZE:
                raise InvalidRecord(
                    f"a handle is {HANDLE_SIZE} bytes", metadata={"field": "handle"}
                )
        return sorted(wanted)

    def _insert_ignoring_conflicts(self, table: Table) -> Any:
        if self._pg:
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    def _raise_existing(self, handles: Iterable[bytes], exc: IntegrityError) -> NoReturn:
        existing = set(self.status(handles))
        if not existing:
            raise exc  # not a duplicate key: a bug, reported as INTERNAL
        raise HandleExists(
            f"stored already: {_name(existing)}", metadata={"handles": _name(existing)}
        ) from None

    def _handle_in(self, wanted: list[bytes]) -> ColumnElement[bool]:
        if self._pg:
            # `= ANY(bytea[])`: one parameter, so one SQL text whatever the batch size
            # (cached by SQLAlchemy and psycopg, no parameter-count limit).
            array = bindparam("handles", wanted, type_=postgresql.ARRAY(LargeBinary))
            return HANDLES.c.handle == any_(array)
        return HANDLES.c.handle.in_(wanted)

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        """Run `work` in a write transaction and commit.

        Retried: deadlocks and serialization failures, and a connection found dead before
        the commit was sent (nothing can have been written then). A connection lost during
        the commit is not retried: the outcome is unknown, StoreUnavailable says so, and
        the caller's retry is safe because publication is idempotent.
        """
        attempt = 0
        while True:
            committing = False
            try:
                with write_transaction(self._engine) as conn:
                    result = work(conn)
                    committing = True
                return result
            except IntegrityError:
                raise
            except DBAPIError as exc:
                lost_early = exc.connection_invalidated and not committing
                if (_is_retryable(exc) or lost_early) and attempt < self._settings.write_retries:
                    attempt += 1
                    time.sleep(0.005 * attempt)
                    continue
                if isinstance(exc, OperationalError):
                    raise StoreUnavailable("the gateway database is unavailable") from exc
                raise

    def _read(self, work: Callable[[Connection], _T]) -> _T:
        """Run read-only `work`; once more on a fresh connection if the first was dead."""
        for attempt in range(2):
            try:
                with self._read_engine.connect() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 0:
                    continue
                if isinstance(exc, OperationalError):
                    raise StoreUnavailable("the gateway database is unavailable") from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover


def _opt(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _task(conn: Connection, task_id: bytes) -> TaskInfo | None:
    # One read transaction; a task's row and outputs are committed together and never
    # change afterwards, so the two statements agree.
    task = conn.execute(select(TASKS).where(TASKS.c.task_id == task_id)).first()
    if task is None:
        return None
    handles = conn.execute(
        select(HANDLES.c.handle).where(HANDLES.c.origin_task == task_id).order_by(HANDLES.c.handle)
    ).scalars()
    return TaskInfo(
        task_id=task_id,
        result_digest=bytes(task.result_digest),
        handles=tuple(bytes(h) for h in handles),
        stored_at=int(task.stored_at),
        evidence=None if task.evidence is None else bytes(task.evidence),
    )
