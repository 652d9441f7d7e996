"""Behaviour of the handle store, the same on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nox.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from nox.gateway.exceptions import (
    BatchTooLarge,
    HandleExists,
    HandleNotFound,
    InvalidRecord,
    TaskConflict,
)
from nox.gateway.store import (
    AsyncHandleStore,
    HandleRecord,
    HandleStore,
    PublishOutcome,
    RowBinding,
    StoreSettings,
    result_digest,
)

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHAIN_ID = 31337  # the chain id and type code the conftest's handles carry
UINT256 = 35

RecordFactory = Callable[..., HandleRecord]
Reencrypt = Callable[[HandleRecord], HandleRecord]
NewHandle = Callable[[], bytes]


class Clock(Protocol):
    now: float

    def __call__(self) -> float: ...


def test_input_round_trip(
    store: HandleStore, new_record: RecordFactory, new_handle: NewHandle, clock: Clock
) -> None:
    owner, app = os.urandom(20), os.urandom(20)
    record = new_record(owner=owner, application=app)
    clock.now = 1_800_000_123.7
    assert store.put_input(record) == 1_800_000_123

    got = store.get([record.handle])
    assert set(got) == {record.handle}
    stored = got[record.handle]
    assert stored.record == record
    assert stored.is_input
    assert stored.origin_task is None
    assert stored.created_at == 1_800_000_123

    status = store.status([record.handle, new_handle()])
    assert set(status) == {record.handle}
    assert status[record.handle].type_code == UINT256
    assert status[record.handle].chain_id == CHAIN_ID
    assert status[record.handle].origin_task is None


def test_get_is_a_batch_and_ignores_unknown_handles(
    store: HandleStore, new_record: RecordFactory, new_handle: NewHandle
) -> None:
    records = [new_record() for _ in range(5)]
    for r in records:
        store.put_input(r)
    unknown = new_handle()
    got = store.get([*(r.handle for r in records), unknown, records[0].handle])
    assert {h: s.record for h, s in got.items()} == {r.handle: r for r in records}
    assert store.get([]) == {}
    assert store.count() == 5


def test_require_keeps_order_and_names_missing(
    store: HandleStore, new_record: RecordFactory, new_handle: NewHandle
) -> None:
    a, b = new_record(), new_record()
    store.put_input(a)
    store.put_input(b)
    assert [s.record for s in store.require([b.handle, a.handle])] == [b, a]
    missing = new_handle()
    with pytest.raises(HandleNotFound) as err:
        store.require([a.handle, missing])
    assert isinstance(err.value, NotFound)
    assert err.value.reason == "HANDLE_NOT_FOUND"
    assert missing.hex() in err.value.metadata["handles"]
    assert a.handle.hex() not in err.value.metadata["handles"]


def test_duplicate_input_rejected_and_row_unchanged(
    store: HandleStore, new_record: RecordFactory, clock: Clock
) -> None:
    original = new_record()
    store.put_input(original)
    clock.now += 100
    impostor = new_record(handle=original.handle)
    with pytest.raises(HandleExists) as err:
        store.put_input(impostor)
    assert isinstance(err.value, AlreadyExists)
    assert err.value.reason == "HANDLE_EXISTS"
    stored = store.get([original.handle])[original.handle]
    assert stored.record == original
    assert stored.created_at == 1_800_000_000


def test_put_inputs_is_all_or_nothing(store: HandleStore, new_record: RecordFactory) -> None:
    existing = new_record()
    store.put_input(existing)
    fresh = [new_record() for _ in range(4)]
    with pytest.raises(HandleExists) as err:
        store.put_inputs([*fresh[:2], new_record(handle=existing.handle), *fresh[2:]])
    assert err.value.metadata["handles"] == "0x" + existing.handle.hex()
    assert store.get(r.handle for r in fresh) == {}
    assert store.get([existing.handle])[existing.handle].record == existing

    store.put_inputs(fresh)
    assert {h: s.record for h, s in store.get(r.handle for r in fresh).items()} == {
        r.handle: r for r in fresh
    }


def test_publish_created_then_unchanged(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt, clock: Clock
) -> None:
    outputs = [new_record() for _ in range(3)]
    assert store.publish_task(b"task-1", outputs, evidence=b"signed result") is (
        PublishOutcome.CREATED
    )
    clock.now += 60
    # A re-execution after a crash: new ciphertexts, same value tags, in another order.
    again = [reencrypt(r) for r in reversed(outputs)]
    assert store.publish_task(b"task-1", again, evidence=b"other") is PublishOutcome.UNCHANGED

    got = store.get(r.handle for r in outputs)
    assert {h: s.record for h, s in got.items()} == {r.handle: r for r in outputs}
    assert {s.origin_task for s in got.values()} == {b"task-1"}
    assert {s.created_at for s in got.values()} == {1_800_000_000}

    info = store.task(b"task-1")
    assert info is not None
    assert info.handles == tuple(sorted(r.handle for r in outputs))
    assert info.result_digest == result_digest(outputs)
    assert info.stored_at == 1_800_000_000
    assert info.evidence == b"signed result"
    assert store.task(b"task-2") is None


def test_conflicting_republication_rejected_original_intact(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    outputs = [new_record() for _ in range(3)]
    store.publish_task(b"task-1", outputs)
    tampered = [reencrypt(r) for r in outputs]
    tampered[1] = new_record(handle=outputs[1].handle)  # another value under one handle
    with pytest.raises(TaskConflict) as err:
        store.publish_task(b"task-1", tampered)
    assert isinstance(err.value, AlreadyExists)
    assert err.value.reason == "TASK_CONFLICT"
    assert {h: s.record for h, s in store.get(r.handle for r in outputs).items()} == {
        r.handle: r for r in outputs
    }
    info = store.task(b"task-1")
    assert info is not None
    assert info.result_digest == result_digest(outputs)


def test_republication_with_fewer_or_more_outputs_conflicts(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    outputs = [new_record() for _ in range(3)]
    store.publish_task(b"task-1", outputs)
    with pytest.raises(TaskConflict):
        store.publish_task(b"task-1", [reencrypt(r) for r in outputs[:2]])
    extra = new_record()
    with pytest.raises(TaskConflict):
        store.publish_task(b"task-1", [*outputs, extra])
    assert store.get([extra.handle]) == {}


def test_partial_overlap_stores_nothing_of_the_new_task(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    first = [new_record() for _ in range(2)]
    store.publish_task(b"task-1", first)
    fresh = [new_record() for _ in range(3)]
    # Same value tag even: the handle belongs to task-1, so task-2 may not claim it.
    with pytest.raises(HandleExists) as err:
        store.publish_task(b"task-2", [fresh[0], reencrypt(first[1]), *fresh[1:]])
    assert err.value.metadata["handles"] == "0x" + first[1].handle.hex()
    assert store.get(r.handle for r in fresh) == {}
    assert store.task(b"task-2") is None
    assert store.get([first[1].handle])[first[1].handle].record == first[1]
    assert store.count() == 2


def test_an_output_may_not_overwrite_an_input(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    user_input = new_record()
    store.put_input(user_input)
    with pytest.raises(HandleExists):
        store.publish_task(b"task-1", [reencrypt(user_input), new_record()])
    assert store.task(b"task-1") is None
    stored = store.get([user_input.handle])[user_input.handle]
    assert stored.record == user_input
    assert stored.is_input


def test_an_input_may_not_overwrite_an_output(
    store: HandleStore, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    output = new_record()
    store.publish_task(b"task-1", [output])
    with pytest.raises(HandleExists):
        store.put_input(reencrypt(output))
    with pytest.raises(HandleExists):
        store.put_inputs([new_record(), reencrypt(output)])
    assert store.get([output.handle])[output.handle].origin_task == b"task-1"
    assert store.count() == 1


def test_restart_loses_nothing(
    settings: StoreSettings, new_record: RecordFactory, reencrypt: Reencrypt, clock: Clock
) -> None:
    first = HandleStore.open(settings, clock=clock)
    user_input = new_record(owner=os.urandom(20), application=os.urandom(20))
    outputs = [new_record() for _ in range(4)]
    first.put_input(user_input)
    first.publish_task(b"task-1", outputs, evidence=b"proof")
    first.close()

    second = HandleStore.open(settings, clock=clock)
    try:
        wanted = [user_input, *outputs]
        got = second.get(r.handle for r in wanted)
        assert {h: s.record for h, s in got.items()} == {r.handle: r for r in wanted}
        info = second.task(b"task-1")
        assert info is not None
        assert info.evidence == b"proof"
        assert second.publish_task(b"task-1", [reencrypt(r) for r in outputs]) is (
            PublishOutcome.UNCHANGED
        )
        with pytest.raises(HandleExists):
            second.put_input(new_record(handle=user_input.handle))
    finally:
        second.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("handle", b"\x00" * 31),
        ("ephemeral_public_key", b"\x02" * 32),
        ("nonce", b"\x00" * 16),
        ("value_tag", b"\x00" * 33),
        ("ciphertext", b""),
        ("owner", b"\x00" * 32),
    ],
)
def test_malformed_records_are_rejected(new_handle: NewHandle, field: str, value: bytes) -> None:
    fields = {
        "handle": new_handle(),
        "ciphertext": b"ct",
        "ephemeral_public_key": b"\x02" * 33,
        "nonce": b"\x00" * 12,
        "value_tag": b"\x00" * 32,
        field: value,
    }
    with pytest.raises(InvalidRecord) as err:
        HandleRecord(**fields)  # type: ignore[arg-type]
    assert isinstance(err.value, InvalidArgument)


def test_bad_requests_are_rejected_and_change_nothing(
    store: HandleStore, new_record: RecordFactory, new_handle: NewHandle, settings: StoreSettings
) -> None:
    r = new_record()
    with pytest.raises(InvalidRecord):
        store.publish_task(b"task-1", [r, r])
    with pytest.raises(InvalidRecord):
        store.publish_task(b"task-1", [])
    with pytest.raises(InvalidRecord):
        store.publish_task(b"", [r])
    with pytest.raises(InvalidRecord):
        store.publish_task(b"x" * 65, [r])
    with pytest.raises(InvalidRecord):
        store.get([b"\x00" * 31])
    with pytest.raises(InvalidRecord):
        store.put_inputs([r, r])
    too_many = [new_handle() for _ in range(settings.max_batch + 1)]
    with pytest.raises(BatchTooLarge) as err:
        store.get(too_many)
    assert isinstance(err.value, ResourceExhausted)
    assert store.count() == 0
    assert store.task(b"task-1") is None


async def test_async_facade(
    settings: StoreSettings, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    import asyncio

    store = await AsyncHandleStore.open(settings)
    try:
        user_input = new_record()
        await store.put_input(user_input)
        with pytest.raises(HandleExists):
            await store.put_input(user_input)
        outputs = [new_record() for _ in range(3)]
        outcomes = await asyncio.gather(
            *(store.publish_task(b"task-1", [reencrypt(r) for r in outputs]) for _ in range(6))
        )
        assert sorted(o.value for o in outcomes) == ["created"] + ["unchanged"] * 5
        got = await store.get([user_input.handle, *(r.handle for r in outputs)])
        assert len(got) == 4
        assert (await store.require([user_input.handle]))[0].record == user_input
        assert set(await store.status(r.handle for r in outputs)) == {r.handle for r in outputs}
        info = await store.task(b"task-1")
        assert info is not None
        assert len(info.handles) == 3
        assert await store.count() == 4
    finally:
        await store.close()


def test_in_memory_sqlite_store(new_record: RecordFactory, reencrypt: Reencrypt) -> None:
    store = HandleStore.open(StoreSettings(url="sqlite://"))
    try:
        outputs = [new_record() for _ in range(2)]
        assert store.publish_task(b"t", outputs) is PublishOutcome.CREATED
        assert store.publish_task(b"t", [reencrypt(r) for r in outputs]) is (
            PublishOutcome.UNCHANGED
        )
        assert {h: s.record for h, s in store.get(r.handle for r in outputs).items()} == {
            r.handle: r for r in outputs
        }
    finally:
        store.close()


def test_sqlite_file_in_a_new_directory(tmp_path: Path, new_record: RecordFactory) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'gateway.sqlite3'}"
    store = HandleStore.open(StoreSettings(url=url))
    try:
        record = new_record()
        store.put_input(record)
        assert store.get([record.handle])[record.handle].record == record
    finally:
        store.close()


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite has no server
def test_calls_survive_a_dropped_database_connection(
    backend: str, settings: StoreSettings, new_record: RecordFactory, reencrypt: Reencrypt
) -> None:
    """PostgreSQL: the server ends the store's pooled connections (as a restart or failover
    does); the next calls reconnect instead of failing, and nothing is written twice."""
    app = f"nox-store-test-{uuid.uuid4().hex[:8]}"
    url = make_url(settings.url).update_query_dict({"application_name": app})
    store = HandleStore.open(StoreSettings(url=url.render_as_string(hide_password=False)))
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)

    def drop_connections() -> int:
        with admin.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = :app"
                    ),
                    {"app": app},
                ).all()
            )

    try:
        first = new_record()
        store.put_input(first)
        assert drop_connections() >= 1
        assert store.get([first.handle])[first.handle].record == first  # read retried
        assert drop_connections() >= 1
        second = new_record()
        store.put_input(second)  # write retried: the connection died before anything was sent
        assert drop_connections() >= 1
        outputs = [new_record() for _ in range(3)]
        assert store.publish_task(b"task-1", outputs) is PublishOutcome.CREATED
        assert drop_connections() >= 1
        assert store.publish_task(b"task-1", [reencrypt(r) for r in outputs]) is (
            PublishOutcome.UNCHANGED
        )
        assert store.count() == 5
    finally:
        store.close()
        admin.dispose()


def _bound(record: HandleRecord, proof: tuple[bytes, ...] = ()) -> HandleRecord:
    binding = RowBinding(os.urandom(32), os.urandom(65), proof)
    return dataclasses.replace(record, binding=binding)


def test_bindings_round_trip_and_scan_pages_in_handle_order(
    store: HandleStore, new_record: RecordFactory
) -> None:
    inputs = [_bound(new_record()) for _ in range(3)]
    for record in inputs:
        store.put_input(record)
    outputs = [_bound(new_record(), (os.urandom(32), os.urandom(32))) for _ in range(2)]
    store.publish_task(b"\x05" * 32, outputs)
    unbound = new_record()  # a row from before bindings: stored with none
    store.put_input(unbound)
    everything = [*inputs, *outputs, unbound]
    got = store.get([r.handle for r in everything])
    assert {h: s.record for h, s in got.items()} == {r.handle: r for r in everything}
    assert got[unbound.handle].record.binding is None
    pages, after = [], b""
    while page := store.scan(after=after, limit=2):
        pages.append(page)
        after = page[-1].record.handle
    assert [len(p) for p in pages] == [2, 2, 2]
    scanned = [s.record for p in pages for s in p]
    assert scanned == sorted(everything, key=lambda r: r.handle)
    assert {s.record.handle: s.origin_task for p in pages for s in p} == {
        **{r.handle: None for r in [*inputs, unbound]},
        **{r.handle: b"\x05" * 32 for r in outputs},
    }
