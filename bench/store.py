"""Gateway store throughput and lookup latency, SQLite and PostgreSQL in one run.

    .venv/bin/python bench/store.py [--handles 100000] [--backends sqlite,postgresql]
                                    [--pg-url URL] [--lookups 2000] [--json]

For each backend, in a fresh database (a temporary SQLite file; a temporary PostgreSQL
schema, dropped afterwards): populate `--handles` input handles with bulk inserts
(`put_inputs`, 4096 a batch), then measure single `put_input` calls (one transaction each),
`publish_task` of 3-output tasks (a confidential transfer's outputs), and batch lookups
(`get`) of 1, 16 and 256 random stored handles, p50/p99 over `--lookups` calls each.
`--handles 1000000` gives the issue's figure (takes a few minutes on PostgreSQL).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nox.gateway.store import HandleRecord, HandleStore, StoreSettings

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHUNK = 4096
CHAIN_ID = 31337
UINT256 = 35


def random_record(rng: random.Random) -> HandleRecord:
    handle = rng.randbytes(26) + CHAIN_ID.to_bytes(4, "big") + bytes([UINT256, 0])
    return HandleRecord(
        handle=handle,
        ciphertext=rng.randbytes(48),  # 32-byte uint256 plaintext + 16-byte GCM tag
        ephemeral_public_key=b"\x02" + rng.randbytes(32),
        nonce=rng.randbytes(12),
        value_tag=rng.randbytes(32),
    )


@contextmanager
def database(backend: str, pg_url: str) -> Iterator[str]:
    """A URL to an empty database of `backend`, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        return
    schema = f"nox_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def timed(fn: Callable[[], object], count: int) -> list[float]:
    """Latencies in milliseconds of `count` calls of `fn`."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def lookup_next(store: HandleStore, batches: Iterator[list[bytes]]) -> None:
    store.get(next(batches))


def pct(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def bench_backend(url: str, handles: int, lookups: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    store = HandleStore.open(StoreSettings(url=url, pool_size=2))
    try:
        stored: list[bytes] = []
        start = time.perf_counter()
        left = handles
        while left > 0:
            batch = [random_record(rng) for _ in range(min(CHUNK, left))]
            store.put_inputs(batch)
            stored.extend(r.handle for r in batch)
            left -= len(batch)
        bulk_s = time.perf_counter() - start

        singles = [random_record(rng) for _ in range(min(2000, max(200, handles // 100)))]
        it = iter(singles)
        single_ms = timed(lambda: store.put_input(next(it)), len(singles))

        tasks = [[random_record(rng) for _ in range(3)] for _ in range(500)]
        tit = iter(enumerate(tasks))

        def publish() -> None:
            i, records = next(tit)
            store.publish_task(f"bench-{i}".encode(), records)

        publish_ms = timed(publish, len(tasks))

        result: dict[str, Any] = {
            "handles": store.count(),
            "bulk_insert_per_s": handles / bulk_s,
            "put_input_per_s": 1000 / statistics.fmean(single_ms),
            "put_input_p50_ms": pct(single_ms, 50),
            "publish_3_per_s": 1000 / statistics.fmean(publish_ms),
            "publish_3_p50_ms": pct(publish_ms, 50),
            "lookup": {},
        }
        for size in (1, 16, 256):
            batches = [rng.sample(stored, size) for _ in range(lookups)]
            samples = timed(functools.partial(lookup_next, store, iter(batches)), lookups)
            result["lookup"][size] = {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99)}
        return result
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handles", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url", default=os.environ.get("NOX_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        with database(backend, args.pg_url) as url:
            results[backend] = bench_backend(url, args.handles, args.lookups, args.seed)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"gateway store, {args.handles} handles populated, {args.lookups} lookups per size")
    for backend, r in results.items():
        print(f"\n{backend} ({r['handles']} handles stored at the end)")
        print(f"  bulk insert (put_inputs x{CHUNK})  {r['bulk_insert_per_s']:10.0f} handles/s")
        print(
            f"  put_input (1 txn each)          {r['put_input_per_s']:10.0f} /s"
            f"   p50 {r['put_input_p50_ms']:.3f} ms"
        )
        print(
            f"  publish_task (3 outputs)        {r['publish_3_per_s']:10.0f} tasks/s"
            f"   p50 {r['publish_3_p50_ms']:.3f} ms"
        )
        for size, lat in r["lookup"].items():
            print(
                f"  get batch of {size:<4}               p50 {lat['p50_ms']:7.3f} ms"
                f"   p99 {lat['p99_ms']:7.3f} ms"
            )


if __name__ == "__main__":
    main()
