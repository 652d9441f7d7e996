"""One conformance suite, every backend: each test runs on SQLite and on PostgreSQL.

SQLite gets a fresh file under tmp_path. PostgreSQL (NOX_TEST_POSTGRES_URL, default the local
test database) gets a schema of its own per test, selected through the connection's
search_path and dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nox.gateway.store import HandleRecord, HandleStore, StoreSettings

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CHAIN_ID = 31337
UINT256 = 35  # type code of uint256 (DESIGN §5)

RecordFactory = Callable[..., HandleRecord]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of `backend`, private to this test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
        return
    schema = f"nox_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Clock:
    """A settable clock (Unix seconds)."""

    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(db_url: str) -> StoreSettings:
    return StoreSettings(url=db_url, pool_size=4)


@pytest.fixture
def store(settings: StoreSettings, clock: Clock) -> Iterator[HandleStore]:
    s = HandleStore.open(settings, clock=clock)
    try:
        yield s
    finally:
        s.close()


def make_handle(type_code: int = UINT256, chain_id: int = CHAIN_ID) -> bytes:
    """A handle in the DESIGN §5 layout with a random prehandle."""
    return os.urandom(26) + chain_id.to_bytes(4, "big") + bytes([type_code, 0])


@pytest.fixture
def new_handle() -> Callable[[], bytes]:
    """Random uint256 handles of chain 31337 (DESIGN §5 layout)."""
    return make_handle


@pytest.fixture
def new_record() -> RecordFactory:
    """Random well-formed records; pass `handle=` / `value_tag=` to pin those fields."""

    def factory(
        handle: bytes | None = None,
        value_tag: bytes | None = None,
        *,
        owner: bytes | None = None,
        application: bytes | None = None,
    ) -> HandleRecord:
        return HandleRecord(
            handle=handle if handle is not None else make_handle(),
            ciphertext=os.urandom(48),
            ephemeral_public_key=b"\x02" + os.urandom(32),
            nonce=os.urandom(12),
            value_tag=value_tag if value_tag is not None else os.urandom(32),
            owner=owner,
            application=application,
        )

    return factory


def reencrypted(record: HandleRecord) -> HandleRecord:
    """The same value under the same handle, encrypted again (as a re-execution does)."""
    return HandleRecord(
        handle=record.handle,
        ciphertext=os.urandom(len(record.ciphertext)),
        ephemeral_public_key=b"\x03" + os.urandom(32),
        nonce=os.urandom(12),
        value_tag=record.value_tag,
    )


@pytest.fixture
def reencrypt() -> Callable[[HandleRecord], HandleRecord]:
    return reencrypted
