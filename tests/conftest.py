"""Shared fixtures: paths of the repository and the shared TDX fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tdx_fixtures() -> Path:
    path = SHARED_FIXTURES / "tdx"
    if not path.is_dir():
        pytest.fail(f"shared TDX fixtures not found at {path} (shared/ must sit beside the repo)")
    return path


# ----------------------------------------------------------------------------- marks
# A test that starts anvil or NATS, or connects to PostgreSQL, talks to a real service and
# must say so (`integration`, or `e2e`), so that `-m "not integration and not e2e"` starts
# none. The guard is on in every run: such a test without the mark fails here, naming what it
# started, whatever else runs before it (session fixtures started during its setup count).

SERVICE_MARKS = ("integration", "e2e")


class UnmarkedServiceUse(Exception):
    """A test not marked integration/e2e started a real service."""


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnmarkedServiceUse(
            f"this test starts {what} but is not marked {' or '.join(SERVICE_MARKS)}"
        )

    return refuse


@contextlib.contextmanager
def services_refused() -> Iterator[None]:
    """Within: starting anvil or NATS, or opening PostgreSQL, raises UnmarkedServiceUse."""
    import psycopg

    from nox.chain.anvil import AnvilProcess
    from nox.queue.server import NatsServerProcess

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AnvilProcess, "start", _refuse("anvil"))
        patch.setattr(NatsServerProcess, "start", _refuse("nats-server"))
        # SQLAlchemy's psycopg dialect and direct users both end in these
        patch.setattr(psycopg, "connect", _refuse("PostgreSQL"))
        patch.setattr(psycopg.Connection, "connect", classmethod(_refuse("PostgreSQL")))
        patch.setattr(psycopg.AsyncConnection, "connect", classmethod(_refuse("PostgreSQL")))
        yield


def _unmarked(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(mark) for mark in SERVICE_MARKS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if not _unmarked(item):
        yield
        return
    with services_refused():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if not _unmarked(item):
        yield
        return
    with services_refused():
        yield


@pytest.fixture(autouse=True)
def _structlog_left_unconfigured() -> Iterator[None]:
    """A test that configures structlog (`structlog.testing.capture_logs` does, and leaves it
    configured with structlog's defaults: stdout, unredacted) must not leak that into the
    next test: reset, so every test starts with nox's redacting stderr chain."""
    yield
    import structlog

    if structlog.is_configured():
        structlog.reset_defaults()
