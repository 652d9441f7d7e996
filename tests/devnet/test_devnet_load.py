"""`nox.devnet.load.TokenLoad` on the single-process devnet: transfers from the contract call
through every service, checked against the model; and its check is not vacuous.

The bench (bench/e2e.py) and the chaos harness (tests/chaos) run the same workload on the
multi-process devnet; here it runs on the embedded EVM, where sending takes the web3 path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update
from sqlalchemy.pool import NullPool

from nox.chain.artifacts import load_artifact
from nox.devnet.config import DevnetSettings
from nox.devnet.load import TokenLoad
from nox.devnet.network import Devnet
from nox.gateway.store._models import HANDLES

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_token_load_round_trip_and_its_check_fails_when_it_should(tmp_path: Path) -> None:
    async with Devnet(DevnetSettings(state_dir=tmp_path / "devnet", runners=1)) as net:
        assert net.chain is not None
        async with net.client() as nox:
            load = await TokenLoad.prepare(net, nox, pairs=2, transfers=8, seed=0)
            try:
                assert len(load.setup_tasks) == 4  # one mint per account, stored already
                first = await load.send(3)
                rest = await load.send()
                assert [s.index for s in first + rest] == list(range(8))
                assert load.remaining == 0
                stored = await load.wait_stored(120)
                assert set(stored) == {s.task_id for s in load.sent}

                report = await load.verify()
                assert report.ok, report.summary()
                assert report.tasks_sent == report.tasks_stored == 8
                assert report.values_checked == 4 + 8  # balances, then transferred amounts

                # the cap was exercised (seed 0 draws amounts over the sender's balance)
                assert any(load.moved[s.index] < s.amount for s in load.sent)

                # A ciphertext substituted in the store is caught: the holder's balance no
                # longer decrypts (the handle is the AES-GCM associated data).
                token = net.chain.backend.contract(
                    load_artifact("ConfidentialToken"), net.chain.deployment.token
                )
                holder, other = (a.address for a in load.accounts[:2])
                mine, theirs = (bytes(token.functions.balanceOf(a).call()) for a in (holder, other))
                engine = create_engine(
                    f"sqlite:///{net.state_dir / 'gateway.sqlite3'}", poolclass=NullPool
                )
                with engine.begin() as conn:
                    row = conn.execute(
                        select(HANDLES.c.ciphertext, HANDLES.c.ephemeral_public_key,
                               HANDLES.c.nonce).where(HANDLES.c.handle == theirs)
                    ).one()  # fmt: skip
                    conn.execute(
                        update(HANDLES).where(HANDLES.c.handle == mine).values(
                            ciphertext=row.ciphertext,
                            ephemeral_public_key=row.ephemeral_public_key,
                            nonce=row.nonce,
                        )
                    )  # fmt: skip
                report = await load.verify()
                assert not report.ok
                assert len(report.wrong) == 1
                assert holder in report.wrong[0]
                assert "not decryptable" in report.wrong[0]

                # A task whose outputs vanished from the store is reported missing.
                victim = load.sent[-1].task_id
                with engine.begin() as conn:
                    conn.execute(delete(HANDLES).where(HANDLES.c.origin_task == victim))
                engine.dispose()
                report = await load.verify()
                assert report.missing == [victim]
                assert not report.ok  # and its balances no longer decrypt
            finally:
                load.close()
