"""Fixtures of the attack tests: the real gateway and a real 2-of-3 KMS over gRPC, on a real
store (SQLite, and PostgreSQL on a schema private to each test), with dictionaries standing
for the registry and the ACL (as in tests/gateway/service)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# the gateway suite's servers and actors (as tests/fuzz does)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway" / "service"))

from gateway_servers import GatewayNet, start_gateway, start_kms, stop_gateway, stop_kms
from gateway_support import GATEWAY, NOW, ORCHESTRATOR, RUNNER, Clock, FakeAcl, FakeRegistry

POSTGRES_URL = os.environ.get(
    "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The gateway's database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
        return
    schema = f"nox_sec_{uuid.uuid4().hex[:16]}"
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
async def gw(store_url: str) -> AsyncIterator[GatewayNet]:
    clock, registry, acl = Clock(NOW), FakeRegistry(), FakeAcl()
    kms = await start_kms(registry, clock, acl.is_publicly_decryptable)
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
        await stop_kms(kms)
