"""The devnet's NATS runs with authentication: anonymous clients are refused, each service
connects as its role, and the credentials in devnet.json are private files."""

from __future__ import annotations

import stat
from pathlib import Path

import nats
import nats.errors
import pytest
from devnet_support import RunningDevnet

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


async def _connect(url: str, **credential: str) -> nats.NATS:
    return await nats.connect(
        servers=[url], allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0,
        **credential,
    )  # fmt: skip


def test_devnet_nats_refuses_anonymous_clients_and_serves_its_roles(
    devnet: RunningDevnet,
) -> None:
    url = devnet.info["nats"]
    users = devnet.info["nats_users"]
    assert set(users) == {"admin", "ingestor", "orchestrator"}
    for user in users.values():
        path = Path(user["password_file"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    admin = users["admin"]
    password = Path(admin["password_file"]).read_text().strip()

    async def check() -> list[str]:
        with pytest.raises(nats.errors.Error):
            await _connect(url)
        nc = await _connect(url, user=admin["user"], password=password)
        try:
            names = await nc.jetstream().streams_info()
            consumers = await nc.jetstream().consumers_info("NOX_TX")
        finally:
            await nc.close()
        return sorted(s.config.name for s in names) + [c.name for c in consumers]

    # the devnet's own ingestor and orchestrator (their roles) set up the streams and consumer
    assert devnet.run(check()) == ["NOX_DLQ", "NOX_TX", "nox-orchestrators"]
