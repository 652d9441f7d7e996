"""Seen-nonce caches: each (signer, nonce) is accepted once within its validity window (DESIGN §4).

An entry is kept until `expires_at + grace`: after `expires_at` the envelope is rejected as
expired anyway, and `grace` covers clock differences between instances sharing one store.
Neither cache ever forgets an unexpired entry: the memory cache refuses new entries when
full (ReplayCacheFull, RESOURCE_EXHAUSTED) rather than evict one that could then be replayed.

Only envelopes whose signer passed the signature and registry checks reach a cache, so the
caches are also where signed requests are limited per verified signer, in one place for
every service (issue 14): a token bucket per signer (`SignerRate`, SIGNER_RATE_LIMITED),
and in the memory cache a quota of unexpired entries per signer (SIGNER_REPLAY_QUOTA_EXCEEDED),
so that one registered signer, even with its real key, cannot fill the cache for the others.
The SQL cache has no size cap to fill (its growth is bounded by the rate limit times the
envelope lifetime), so it has no per-signer quota.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from nox.crypto.exceptions import (
    ReplayCacheFull,
    ReplayedNonce,
    SignerRateLimited,
    SignerReplayQuotaExceeded,
)

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_SIGNER_RATE",
    "RELAYED",
    "MemoryReplayCache",
    "ReplayCache",
    "SignerRate",
    "SqlReplayCache",
]

DEFAULT_GRACE = 60
"""Seconds an entry outlives its expires_at (tolerated clock drift between instances)."""


@dataclass(frozen=True, slots=True)
class SignerRate:
    """A token bucket per verified signer: `burst` signed requests at once, then `rate` per
    second (of the verifiers' clock, whole seconds)."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a signer rate needs rate > 0 and burst >= 1")


DEFAULT_SIGNER_RATE = SignerRate(rate=1000.0, burst=2000)
"""Above any one signer's legitimate rate measured so far (a gateway's Delegate calls to a
KMS node follow its EncryptInput/GetOperands throughput, under 500/s in bench/), far below
what one core can verify (about 17k envelopes/s)."""


class _SignerBuckets:
    """Token buckets per signer; idle signers are forgotten (least recently used first)
    beyond `max_signers`. Call under the owner's lock."""

    def __init__(self, rate: SignerRate, max_signers: int = 100_000) -> None:
        self._rate = rate
        self._max = max_signers
        self._buckets: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def take(self, signer: bytes, now: int) -> None:
        rate = self._rate
        tokens, last = self._buckets.pop(signer, (float(rate.burst), now))
        tokens = min(float(rate.burst), tokens + max(0, now - last) * rate.rate)
        allowed = tokens >= 1.0
        self._buckets[signer] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if not allowed:
            raise SignerRateLimited(
                "too many signed requests from this signer; retry later",
                metadata={
                    "signer": "0x" + signer.hex(),
                    "retry_after_seconds": f"{(1.0 - tokens) / rate.rate:.3f}",
                },
            )


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
    filling it takes a registered signer; an entry costs roughly 300 bytes. One signer holds
    at most `max_entries_per_signer` entries (default a quarter of the cache), so filling
    the cache for everyone takes four registered signers, not one; and each signer's
    requests pass `signer_rate` (None: no rate limit).
    """

    def __init__(
        self,
        max_entries: int = 200_000,
        *,
        grace: int = DEFAULT_GRACE,
        max_entries_per_signer: int | None = None,
        signer_rate: SignerRate | None = DEFAULT_SIGNER_RATE,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        per_signer = (
            max(1, max_entries // 4) if max_entries_per_signer is None else max_entries_per_signer
        )
        if not 1 <= per_signer <= max_entries:
            raise ValueError("max_entries_per_signer must be in 1..max_entries")
        self._max = max_entries
        self._per_signer = per_signer
        self._grace = grace
        self._seen: dict[tuple[bytes, bytes], int] = {}
        self._counts: dict[bytes, int] = {}  # unexpired entries per signer
        self._expiry: list[tuple[int, tuple[bytes, bytes]]] = []  # min-heap of (forget_at, key)
        self._rates = None if signer_rate is None else _SignerBuckets(signer_rate)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: int) -> None:
        expiry, seen, counts = self._expiry, self._seen, self._counts
        while expiry and expiry[0][0] < now:
            _, key = heapq.heappop(expiry)
            del seen[key]
            left = counts[key[0]] - 1
            if left:
                counts[key[0]] = left
            else:
                del counts[key[0]]

    def check_and_record(self, signer: bytes, nonce: bytes, expires_at: int, now: int) -> None:
        signer = bytes(signer)
        key = (signer, bytes(nonce))
        forget_at = expires_at + self._grace
        with self._lock:
            if self._rates is not None:
                self._rates.take(signer, now)
            self._prune(now)
            if key in self._seen:
                raise ReplayedNonce("nonce already used by this signer")
            if len(self._seen) >= self._max:
                raise ReplayCacheFull("seen-nonce cache is full of unexpired entries")
            held = self._counts.get(signer, 0)
            if held >= self._per_signer:
                raise SignerReplayQuotaExceeded(
                    "this signer holds its whole share of the seen-nonce cache; retry later",
                    metadata={"signer": "0x" + signer.hex(), "limit": str(self._per_signer)},
                )
            self._seen[key] = forget_at
            self._counts[signer] = held + 1
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
        signer_rate: SignerRate | None = DEFAULT_SIGNER_RATE,
    ) -> None:
        self._engine = engine
        self._rates = None if signer_rate is None else _SignerBuckets(signer_rate)
        self._rates_lock = threading.Lock()
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
        if self._rates is not None:
            with self._rates_lock:
                self._rates.take(bytes(signer), now)
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
