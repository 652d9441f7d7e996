"""Fixtures of the crypto tests: pinned keys and domain, and SQL engines for the replay caches."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def signer_key() -> EnclaveKey:
    return EnclaveKey.from_bytes(bytes.fromhex("11" * 32))


@pytest.fixture
def domain() -> Domain:
    return Domain(chain_id=31337, verifying_contract=bytes.fromhex("5f" * 20))


@pytest.fixture
def audience() -> bytes:
    return bytes.fromhex("a1" * 20)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'replay.db'}"


@pytest.fixture
def pg_schema() -> Iterator[tuple[Engine, str]]:
    """A PostgreSQL engine and a schema unique to this test, dropped afterwards."""
    engine = sa.create_engine(POSTGRES_URL)
    schema = f"nox_test_replay_{secrets.token_hex(6)}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
