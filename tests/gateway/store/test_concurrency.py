"""Racing publications and readers, with real parallel connections (DESIGN §7, §8).

Every racer has a store (engine, connection pool) of its own, connected before a barrier
releases all of them at once; the database alone decides who wins. The suite runs on
PostgreSQL, where this matters in production, and on SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import event

from nox.gateway.exceptions import HandleExists, TaskConflict
from nox.gateway.store import (
    HandleRecord,
    HandleStore,
    PublishOutcome,
    StoreSettings,
    result_digest,
)

RecordFactory = Callable[..., HandleRecord]
Reencrypt = Callable[[HandleRecord], HandleRecord]
T = TypeVar("T")

RACERS = 8
Outcome = PublishOutcome | TaskConflict | HandleExists


def race(settings: StoreSettings, job: Callable[[HandleStore, int], T], n: int = RACERS) -> list[T]:
    """Run `job(store_i, i)` in n threads, each with its own connected store, all released
    by one barrier; return the results in racer order (exceptions propagate)."""
    stores = [HandleStore.open(settings) for _ in range(n)]
    try:
        for s in stores:
            s.count()  # connection established before the start
        barrier = threading.Barrier(n, timeout=60)

        def run(i: int) -> T:
            barrier.wait()
            return job(stores[i], i)

        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(run, range(n)))
    finally:
        for s in stores:
            s.close()


def publish(store: HandleStore, task_id: bytes, records: Sequence[HandleRecord]) -> Outcome:
    try:
        return store.publish_task(task_id, records)
    except (TaskConflict, HandleExists) as err:
        return err


def stored_records(store: HandleStore, handles: Sequence[bytes]) -> dict[bytes, HandleRecord]:
    return {h: s.record for h, s in store.get(handles).items()}


def test_identical_publications_race_one_creates(
    store: HandleStore, settings: StoreSettings, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    outputs = [new_record() for _ in range(6)]
    # Each racer re-executed the task: own ciphertexts, same value tags.
    versions = [[reencrypt(r) for r in outputs] for _ in range(RACERS)]
    outcomes = race(settings, lambda s, i: publish(s, b"task-1", versions[i]))

    assert outcomes.count(PublishOutcome.CREATED) == 1
    assert outcomes.count(PublishOutcome.UNCHANGED) == RACERS - 1
    winner = versions[outcomes.index(PublishOutcome.CREATED)]
    assert stored_records(store, [r.handle for r in outputs]) == {r.handle: r for r in winner}


def test_conflicting_publications_race_one_wins(
    store: HandleStore, settings: StoreSettings, new_record: RecordFactory
) -> None:
    handles = [new_record().handle for _ in range(6)]
    # Every racer claims other values (value tags) for the same task and handles.
    versions = [[new_record(handle=h) for h in handles] for _ in range(RACERS)]
    outcomes = race(settings, lambda s, i: publish(s, b"task-1", versions[i]))

    assert outcomes.count(PublishOutcome.CREATED) == 1
    losers = [o for o in outcomes if o is not PublishOutcome.CREATED]
    assert all(isinstance(o, TaskConflict) for o in losers)
    winner = versions[outcomes.index(PublishOutcome.CREATED)]
    assert stored_records(store, handles) == {r.handle: r for r in winner}
    info = store.task(b"task-1")
    assert info is not None
    assert info.result_digest == result_digest(winner)


def test_tasks_claiming_the_same_handle_race_one_wins(
    store: HandleStore, settings: StoreSettings, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    shared = new_record()
    # Different tasks, each with outputs of its own plus one shared handle, in varying order.
    versions = [
        [new_record(), reencrypt(shared), new_record()][:: 1 if i % 2 else -1]
        for i in range(RACERS)
    ]
    task_ids = [f"task-{i}".encode() for i in range(RACERS)]
    outcomes = race(settings, lambda s, i: publish(s, task_ids[i], versions[i]))

    assert outcomes.count(PublishOutcome.CREATED) == 1
    assert all(isinstance(o, HandleExists) for o in outcomes if o is not PublishOutcome.CREATED)
    w = outcomes.index(PublishOutcome.CREATED)
    assert [store.task(t) is not None for t in task_ids] == [i == w for i in range(RACERS)]
    everything = [r.handle for v in versions for r in v]
    assert stored_records(store, everything) == {r.handle: r for r in versions[w]}


def test_a_reader_sees_nothing_of_a_task_being_written(
    store: HandleStore, settings: StoreSettings, new_record: RecordFactory
) -> None:
    """Deterministic: the writer stops inside its transaction, after its INSERTs ran and
    before COMMIT, while a reader on another connection looks."""
    writer = HandleStore.open(settings)
    outputs = [new_record() for _ in range(1500)]  # several INSERT pages on PostgreSQL
    handles = [r.handle for r in outputs]
    inserted, looked = threading.Event(), threading.Event()
    seen_mid_transaction: list[Any] = []

    def pause_after_insert(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO gateway_handles") and not inserted.is_set():
            inserted.set()
            assert looked.wait(60)

    def read() -> None:
        assert inserted.wait(60)
        seen_mid_transaction.append(store.get(handles[:1000]))
        seen_mid_transaction.append(store.status(handles[-1000:]))
        seen_mid_transaction.append(store.task(b"task-1"))
        looked.set()

    event.listen(writer.engine, "after_cursor_execute", pause_after_insert)
    try:
        with ThreadPoolExecutor(1) as pool:
            reader = pool.submit(read)
            assert writer.publish_task(b"task-1", outputs) is PublishOutcome.CREATED
            reader.result()
    finally:
        writer.close()
    assert seen_mid_transaction == [{}, {}, None]
    assert store.count() == len(outputs)


def test_polling_readers_never_see_a_partial_task(
    store: HandleStore, settings: StoreSettings, new_record: RecordFactory
) -> None:
    tasks = {os.urandom(8): [new_record() for _ in range(40)] for _ in range(24)}
    all_handles = [r.handle for rs in tasks.values() for r in rs]
    task_of = {r.handle: t for t, rs in tasks.items() for r in rs}
    done = threading.Event()
    snapshots: list[dict[bytes, int]] = []

    def poll() -> None:
        while True:
            finished = done.is_set()  # read before the snapshot, so the last one is complete
            counts: dict[bytes, int] = {}
            for h in store.status(all_handles):
                counts[task_of[h]] = counts.get(task_of[h], 0) + 1
            snapshots.append(counts)
            if finished:
                return

    def write(part: int) -> None:
        w = HandleStore.open(settings)
        try:
            for i, (task_id, records) in enumerate(tasks.items()):
                if i % 2 == part:
                    assert w.publish_task(task_id, records) is PublishOutcome.CREATED
        finally:
            w.close()

    with ThreadPoolExecutor(3) as pool:
        reader = pool.submit(poll)
        writers = [pool.submit(write, part) for part in (0, 1)]
        for f in writers:
            f.result()
        done.set()
        reader.result()

    assert len(snapshots) >= 1
    for counts in snapshots:
        assert set(counts.values()) <= {40}, "a task was visible in part"
    assert snapshots[-1] == dict.fromkeys(tasks, 40)
