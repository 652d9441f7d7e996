"""Seen-nonce caches: each (signer, nonce) is accepted once within its validity window (DESIGN §4).

An entry is kept until `expires_at + grace`: after `expires_at` the envelope is rejected as
expired anyway, and `grace` covers clock differences between instances sharing one store.
Neither cache ever forgets an unexpired entry: the memory cache refuses new entries when
full (ReplayCacheFull, RESOURCE_EXHAUSTED) rather than evict one that could then be replayed.
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from nox.crypto.exceptions import ReplayCacheFull, ReplayedNonce

__all__ = [
    "DEFAULT_GRACE",
    "RELAYED",
    "MemoryReplayCache",
    "ReplayCache",
    "SqlReplayCache",
]

DEFAULT_GRACE = 60
"""Seconds an entry outlives its expires_at (tolerated clock drift between instances)."""


class ReplayCache(Protocol):
    """A store of accepted (signer, nonce) pairs."""

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        """Record the pair, or raise ReplayedNonce if it was recorded before. Atomic."""
        ...


class _DoNotRecord:
    """Replay policy for envelopes presented several times by design.

    A signed credential nested inside another message (an orchestrator's assignment inside a
    runner's request, an ingestor's transaction inside an assignment, a runner's request
    relayed by the gateway to each KMS node) is shown to several verifiers, and to the same
    verifier again on redelivery. Its signature, audience and validity window are still
    checked; only the outer envelope, whose nonce is recorded, protects against replay
    (docs/api.md, "Envelopes inside payloads").
    """

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        del signer, nonce, expires_at, now


RELAYED: ReplayCache = _DoNotRecord()
"""The replay cache for nested (relayed) envelopes: checks windows, records nothing."""


class MemoryReplayCache:
    """An in-process cache, bounded to `max_entries` unexpired pairs; thread-safe.

    For services without a store. It does not survive a restart, so a restarted instance
    accepts envelopes it had seen: use SqlReplayCache where the service has a database.
    Only envelopes that passed the signature (and `authorize`) checks reach the cache, so
    filling it takes a registered signer; an entry costs roughly 300 bytes.
    """

    def __init__(self, max_entries: int = 200_000, *, grace: int = DEFAULT_GRACE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._grace = grace
        self._seen: dict[tuple[bytes, bytes], int] = {}
        self._expiry: list[tuple[int, tuple[bytes, bytes]]] = []  # min-heap of (forget_at, key)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: int) -> None:
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] < now:
            _, key = heapq.heappop(expiry)
            del seen[key]

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        key = (bytes(signer), bytes(nonce))
        forget_at = expires_at + self._grace
        with self._lock:
            self._prune(now)
            if key in self._seen:
                raise ReplayedNonce("nonce already used by this signer")
            if len(self._seen) >= self._max:
                raise ReplayCacheFull("seen-nonce cache is full of unexpired entries")
            self._seen[key] = forget_at
            heapq.heappush(self._expiry, (forget_at, key))


class SqlReplayCache:
    """A seen-nonce table in a SQL database (SQLite or PostgreSQL) over SQLAlchemy Core.

    Table `nox_seen_nonces(signer, nonce, expires_at)`, primary key (signer, nonce): the
    insert itself is the check, so two instances racing on one pair cannot both succeed.
    Entries survive a restart. Expired rows are pruned every `prune_interval` seconds of the
    callers' clock (and by `prune`). Calls block: from asyncio, run verification in a thread.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        table_name: str = "nox_seen_nonces",
        schema: str | None = None,
        grace: int = DEFAULT_GRACE,
        prune_interval: int = 60,
        create_table: bool = True,
    ) -> None:
        self._engine = engine
        self._grace = grace
        self._prune_interval = prune_interval
        self._next_prune: int | None = None
        self.metadata = sa.MetaData(schema=schema)
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("signer", sa.LargeBinary(20), primary_key=True),
            sa.Column("nonce", sa.LargeBinary(32), primary_key=True),
            sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        )
        dialect = engine.dialect.name
        self._insert: sa.Executable
        if dialect == "postgresql":
            self._insert = (
                postgresql.insert(self.table).on_conflict_do_nothing().returning(self.table.c.nonce)
            )
        elif dialect == "sqlite":
            self._insert = (
                sqlite.insert(self.table).on_conflict_do_nothing().returning(self.table.c.nonce)
            )
        else:
            raise ValueError(f"unsupported database dialect {dialect!r} (SQLite or PostgreSQL)")
        if create_table:
            self.metadata.create_all(engine)
        # PostgreSQL: the insert alone, in autocommit (see check_and_record). SQLite engines
        # may drive their own BEGIN (the gateway's store emits BEGIN IMMEDIATE from a hook,
        # which SQLAlchemy's autocommit would then never commit): a plain transaction there.
        self._autocommit = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql"
            else None
        )

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        row = {
            "signer": bytes(signer),
            "nonce": bytes(nonce),
            "expires_at": expires_at + self._grace,
        }
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + self._prune_interval
            self.prune(now)
        # On PostgreSQL one statement in autocommit: the insert is the whole check (atomic on
        # the primary key), so BEGIN and COMMIT round trips would only add latency and CPU
        # on the hot path of every verified envelope. RETURNING yields the row only when it was
        # inserted (rowcount is not reliable for ON CONFLICT DO NOTHING across drivers).
        if self._autocommit is not None:
            with self._autocommit.connect() as conn:
                inserted = conn.execute(self._insert, row).first()
        else:
            with self._engine.begin() as conn:
                inserted = conn.execute(self._insert, row).first()
        if inserted is None:
            raise ReplayedNonce("nonce already used by this signer")

    def prune(self, now: int) -> int:
        """Delete entries past their retention; returns how many went."""
        with self._engine.begin() as conn:
            deleted = conn.execute(sa.delete(self.table).where(self.table.c.expires_at < now))
        return int(deleted.rowcount)
