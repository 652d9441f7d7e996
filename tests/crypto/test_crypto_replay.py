"""Replay caches: one conformance suite run against memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nox.crypto.exceptions import (
    ReplayCacheFull,
    ReplayedNonce,
    SignerRateLimited,
    SignerReplayQuotaExceeded,
)
from nox.crypto.replay import MemoryReplayCache, ReplayCache, SignerRate, SqlReplayCache

SIGNER_A = b"\xaa" * 20
SIGNER_B = b"\xbb" * 20
NOW = 1_760_000_000

Factory = Callable[[], ReplayCache]


def nonce(i: int) -> bytes:
    return i.to_bytes(32, "big")


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_cache(backend: str, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A factory of caches sharing one store (a new object = a restarted service)."""
    if backend == "memory":
        shared = MemoryReplayCache(grace=0)
        yield lambda: shared
        return
    if backend == "sqlite":
        engine = sa.create_engine(request.getfixturevalue("sqlite_url"))
        yield lambda: SqlReplayCache(engine, grace=0)
        engine.dispose()
        return
    pg_engine, schema = request.getfixturevalue("pg_schema")
    yield lambda: SqlReplayCache(pg_engine, schema=schema, grace=0)


def test_first_use_accepted_second_rejected(make_cache: Factory) -> None:
    cache = make_cache()
    cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW)
    with pytest.raises(ReplayedNonce) as err:
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW + 1)
    assert err.value.reason == "NONCE_REPLAYED"
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_pairs_are_per_signer(make_cache: Factory) -> None:
    cache = make_cache()
    cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW)
    cache.check_and_record(SIGNER_B, nonce(1), NOW + 60, NOW)
    cache.check_and_record(SIGNER_A, nonce(2), NOW + 60, NOW)
    with pytest.raises(ReplayedNonce):
        cache.check_and_record(SIGNER_B, nonce(1), NOW + 60, NOW)


def test_survives_restart(make_cache: Factory, backend: str) -> None:
    make_cache().check_and_record(SIGNER_A, nonce(7), NOW + 60, NOW)
    restarted = make_cache()
    with pytest.raises(ReplayedNonce):
        restarted.check_and_record(SIGNER_A, nonce(7), NOW + 60, NOW + 10)


def test_remembered_until_expiry_then_pruned(make_cache: Factory) -> None:
    cache = make_cache()
    cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW)
    with pytest.raises(ReplayedNonce):  # still inside the window at its last second
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW + 60)
    # Past expiry (grace 0 here) the entry is dropped; the envelope check refuses it anyway.
    if isinstance(cache, SqlReplayCache):
        assert cache.prune(NOW + 61) == 1
    cache.check_and_record(SIGNER_A, nonce(2), NOW + 200, NOW + 61)
    cache.check_and_record(SIGNER_A, nonce(1), NOW + 200, NOW + 61)


def test_grace_keeps_entries_longer(sqlite_url: str) -> None:
    for cache in (
        MemoryReplayCache(grace=30),
        SqlReplayCache(sa.create_engine(sqlite_url), grace=30, prune_interval=0),
    ):
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW)
        with pytest.raises(ReplayedNonce):
            cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW + 90)
        cache.check_and_record(SIGNER_A, nonce(3), NOW + 200, NOW + 91)  # prunes nonce 1
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 200, NOW + 91)


def test_sql_prunes_on_interval(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    cache = SqlReplayCache(engine, grace=0, prune_interval=100)
    for i in range(5):
        cache.check_and_record(SIGNER_A, nonce(i), NOW + 10, NOW)
    cache.check_and_record(SIGNER_A, nonce(99), NOW + 500, NOW + 50)  # before the interval
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cache.table)).scalar() == 6
    cache.check_and_record(SIGNER_A, nonce(100), NOW + 500, NOW + 100)  # interval reached
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cache.table)).scalar() == 2


def test_memory_full_refuses_rather_than_forgets() -> None:
    cache = MemoryReplayCache(max_entries=3, grace=0, max_entries_per_signer=3)
    for i in range(3):
        cache.check_and_record(SIGNER_A, nonce(i), NOW + 60 + i, NOW)
    with pytest.raises(ReplayCacheFull) as err:
        cache.check_and_record(SIGNER_A, nonce(9), NOW + 60, NOW)
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    for i in range(3):  # nothing was forgotten
        with pytest.raises(ReplayedNonce):
            cache.check_and_record(SIGNER_A, nonce(i), NOW + 60, NOW)
    # Once the earliest entry expires there is room again, and only it was dropped.
    cache.check_and_record(SIGNER_A, nonce(9), NOW + 100, NOW + 61)
    assert len(cache) == 3
    with pytest.raises(ReplayedNonce):
        cache.check_and_record(SIGNER_A, nonce(2), NOW + 60, NOW + 61)


def race(make_cache: Factory, threads: int = 8) -> list[str]:
    caches = [make_cache() for _ in range(threads)]
    barrier = threading.Barrier(threads, timeout=30)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(cache: ReplayCache) -> None:
        barrier.wait()
        try:
            cache.check_and_record(SIGNER_A, nonce(42), NOW + 60, NOW)
            result = "accepted"
        except ReplayedNonce:
            result = "replayed"
        except Exception as exc:  # reported through the outcome list, so the test fails
            result = repr(exc)
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=run, args=(cache,)) for cache in caches]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return outcomes


@pytest.mark.integration
def test_concurrent_instances_accept_once(make_cache: Factory) -> None:
    """Several instances (threads, each its own cache object) race on one pair."""
    outcomes = race(make_cache)
    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 7


@pytest.mark.integration
def test_sql_table_layout(pg_schema: tuple[Engine, str]) -> None:
    engine, schema = pg_schema
    SqlReplayCache(engine, schema=schema)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("nox_seen_nonces", schema)}
    assert set(columns) == {"signer", "nonce", "expires_at"}
    pk = sa.inspect(engine).get_pk_constraint("nox_seen_nonces", schema)
    assert pk["constrained_columns"] == ["signer", "nonce"]


def test_sql_rejects_other_dialects() -> None:
    engine = sa.create_mock_engine("mysql://", executor=lambda *a, **k: None)
    assert engine.dialect.name == "mysql"
    with pytest.raises(ValueError, match="unsupported"):
        SqlReplayCache(engine, create_table=False)  # type: ignore[arg-type]


def test_memory_signer_quota_is_freed_as_its_entries_expire() -> None:
    cache = MemoryReplayCache(max_entries=100, grace=0, max_entries_per_signer=2)
    cache.check_and_record(SIGNER_A, nonce(0), NOW + 10, NOW)
    cache.check_and_record(SIGNER_A, nonce(1), NOW + 20, NOW)
    with pytest.raises(SignerReplayQuotaExceeded):
        cache.check_and_record(SIGNER_A, nonce(2), NOW + 20, NOW)
    cache.check_and_record(SIGNER_B, nonce(2), NOW + 20, NOW)  # another signer: room
    cache.check_and_record(SIGNER_A, nonce(3), NOW + 20, NOW + 11)  # nonce(0) expired
    with pytest.raises(ReplayedNonce):  # the unexpired ones are still remembered
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 20, NOW + 11)


def test_signer_rate_is_per_signer_and_refills(sqlite_url: str) -> None:
    rate = SignerRate(rate=2, burst=2)
    engine = sa.create_engine(sqlite_url)
    for cache in (
        MemoryReplayCache(signer_rate=rate),
        SqlReplayCache(engine, signer_rate=rate),
    ):
        cache.check_and_record(SIGNER_A, nonce(0), NOW + 60, NOW)
        cache.check_and_record(SIGNER_A, nonce(1), NOW + 60, NOW)
        with pytest.raises(SignerRateLimited) as err:
            cache.check_and_record(SIGNER_A, nonce(2), NOW + 60, NOW)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        cache.check_and_record(SIGNER_B, nonce(2), NOW + 60, NOW)
        cache.check_and_record(SIGNER_A, nonce(2), NOW + 60, NOW + 1)  # refilled: 2 per second
    engine.dispose()
