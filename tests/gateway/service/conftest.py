"""Fixtures: a gateway over real gRPC with a real store and a real 2-of-3 KMS.

The registry and the ACL are dictionaries behind the gateway's protocols (what these tests
test is the gateway; the chain-backed views are exercised by the end-to-end test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from gateway_servers import GatewayNet, Kms, start_gateway, start_kms, stop_gateway, stop_kms
from gateway_support import GATEWAY, NOW, ORCHESTRATOR, RUNNER, Clock, FakeAcl, FakeRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL on a schema private to this test (dropped afterwards)."""
    schema = f"nox_gw_{uuid.uuid4().hex[:16]}"
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


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def acl() -> FakeAcl:
    return FakeAcl()


@pytest.fixture
async def kms(registry: FakeRegistry, clock: Clock, acl: FakeAcl) -> AsyncIterator[Kms]:
    network = await start_kms(registry, clock, acl.is_publicly_decryptable)
    try:
        yield network
    finally:
        await stop_kms(network)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.sqlite3'}"


@pytest.fixture
async def gw(
    store_url: str, clock: Clock, registry: FakeRegistry, acl: FakeAcl, kms: Kms
) -> AsyncIterator[GatewayNet]:
    net = await start_gateway(
        store_url=store_url,
        clock=clock,
        registry=registry,
        acl=acl,
        kms=kms,
        key=registry.enrol(GATEWAY),
        orchestrator=registry.enrol(ORCHESTRATOR),
        runner=registry.enrol(RUNNER),
    )
    try:
        yield net
    finally:
        await stop_gateway(net)
