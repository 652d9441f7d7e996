"""The marks select what they say: an unmarked test cannot start a real service.

tests/conftest.py refuses, in every run, anvil, nats-server and PostgreSQL connections to
any test not marked `integration` or `e2e`; so `pytest -m "not integration and not e2e"`
starts none of them. These tests are unmarked on purpose: they are the guard's own check.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from nox.chain.anvil import AnvilProcess
from nox.queue.server import NatsServerProcess


def _refused(exc: pytest.ExceptionInfo[BaseException], what: str) -> None:
    assert type(exc.value).__name__ == "UnmarkedServiceUse"
    assert what in str(exc.value)
    assert "integration" in str(exc.value)


def test_an_unmarked_test_cannot_start_anvil() -> None:
    with pytest.raises(Exception) as exc:  # noqa: PT011 (the guard's class lives in conftest)
        AnvilProcess().start()
    _refused(exc, "anvil")


def test_an_unmarked_test_cannot_start_nats(tmp_path: Path) -> None:
    with pytest.raises(Exception) as exc:  # noqa: PT011
        NatsServerProcess(tmp_path / "nats").start()
    _refused(exc, "nats-server")


def test_an_unmarked_test_cannot_reach_postgresql() -> None:
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises(Exception) as exc:  # noqa: PT011
        engine.connect()
    assert "UnmarkedServiceUse" in repr(exc.value)  # SQLAlchemy wraps the dialect's error
    with pytest.raises(Exception) as direct:  # noqa: PT011
        psycopg.connect("host=127.0.0.1 dbname=test user=postgres")
    _refused(direct, "PostgreSQL")


@pytest.mark.integration
def test_a_marked_test_may(tmp_path: Path) -> None:
    server = NatsServerProcess(tmp_path / "nats")
    server.start()
    try:
        assert server.url.startswith("nats://127.0.0.1:")
    finally:
        server.close()
