"""The ingestor suite: a real nats-server per test, the embedded EVM, SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from ingest_support import Chain, make_chain
from natsfix import nats_server, queue_settings
from sqlalchemy.engine import Engine

__all__ = ["chain", "engine", "nats_server", "queue_settings"]

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def chain() -> Chain:
    return make_chain()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'ingestor.db'}")
    else:
        eng = sa.create_engine(POSTGRES_URL)
        # scripts/services starts PostgreSQL; an unreachable server is a failure, not a skip.
    try:
        yield eng
    finally:
        eng.dispose()
