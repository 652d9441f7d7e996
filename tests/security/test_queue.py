"""Attacks on the transaction queue, run with a raw nats-py client (docs/queue.md).

NATS is trusted for availability only: without credentials nothing is reachable; each role
can do only its own part; and a publisher that squats the JetStream message id of a mined
transaction (junk, or an older genuinely signed message replayed under the new id) can no
longer make that transaction silently never computed.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
import sqlalchemy as sa
from natsfix import nats_server, open_queue, queue_settings, read_parked, role_settings

from nox.chain.contracts import to_bytes20
from nox.ingestor import CursorStore
from nox.orchestrator.tasks import task_id_for
from nox.queue import NatsServerProcess, QueueSettings, transaction_msg_id
from nox.queue.connection import auth_options
from nox.v1 import common_pb2, task_pb2

sys.path.append(str(Path(__file__).resolve().parent.parent / "ingestor"))
sys.path.append(str(Path(__file__).resolve().parent.parent / "orchestrator"))

from ingest_support import Chain, drain, make_chain, make_ingestor
from orch_doubles import FakeRunner, Harness

__all__ = ["nats_server", "queue_settings"]

pytestmark = [pytest.mark.integration]
S = task_pb2.TaskState


async def _raw(settings: QueueSettings) -> nats.NATS:
    """A plain nats-py client with exactly the settings' credential (no retries)."""
    return await nats.connect(
        servers=list(settings.servers), allow_reconnect=False, connect_timeout=2,
        max_reconnect_attempts=0, **auth_options(settings),
    )  # fmt: skip


async def _refused(coro: object) -> None:
    """A request the server refuses by permissions: nats-py sees no answer (the server
    drops it with a permissions violation), so it times out."""
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await coro  # type: ignore[misc]


@pytest.fixture
async def streams(queue_settings: QueueSettings) -> AsyncIterator[None]:
    async with open_queue(queue_settings):
        yield


async def test_connect_without_credentials_is_refused(nats_server: NatsServerProcess) -> None:
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            servers=[nats_server.url], allow_reconnect=False, connect_timeout=2,
            max_reconnect_attempts=0,
        )  # fmt: skip
    wrong = nats_server.settings("ingestor").user
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            servers=[nats_server.url], allow_reconnect=False, connect_timeout=2,
            max_reconnect_attempts=0, user=wrong, password="not-the-password",
        )  # fmt: skip


async def test_orchestrator_cannot_publish_transactions(
    nats_server: NatsServerProcess, streams: None
) -> None:
    orch = role_settings(nats_server, "orchestrator")
    nc = await _raw(orch)
    try:
        js = nc.jetstream(timeout=1.0)
        msg_id = transaction_msg_id(1, b"\x01" * 32)
        await _refused(js.publish(orch.tx_subject(1), b"forged", headers={"Nats-Msg-Id": msg_id}))
    finally:
        await nc.close()
    admin = nats_server.settings("admin")
    async with open_queue(admin) as conn:
        info = await conn.js.stream_info(admin.stream)
        assert info.state.messages == 0  # nothing was stored


async def test_other_identities_cannot_consume_the_stream(
    nats_server: NatsServerProcess, queue_settings: QueueSettings, streams: None
) -> None:
    async with open_queue(queue_settings) as conn:
        await conn.js.publish(queue_settings.tx_subject(1), b"secret-ish", stream="NOX_TX")
    ing = role_settings(nats_server, "ingestor")
    nc = await _raw(ing)
    try:
        js = nc.jetstream(timeout=1.0)
        # its own consumer, an ephemeral one, or a pull on the orchestrators' durable
        await _refused(js.pull_subscribe(ing.tx_subjects, stream=ing.stream))
        await _refused(nc.request(f"$JS.API.CONSUMER.MSG.NEXT.NOX_TX.{ing.durable}", b"1", 1.0))
        # nor can it read another role's deliveries
        sub = await nc.subscribe("_INBOX_orchestrator.>")
        await nc.flush(timeout=1)
        async with open_queue(queue_settings) as conn:
            await conn.nc.publish("_INBOX_orchestrator.x", b"delivery")
            await conn.nc.flush(timeout=1)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=1)
        # nor delete or purge the stream
        await _refused(nc.request("$JS.API.STREAM.PURGE.NOX_TX", b"", 1.0))
        await _refused(nc.request("$JS.API.STREAM.DELETE.NOX_TX", b"", 1.0))
    finally:
        await nc.close()
    async with open_queue(queue_settings) as conn:
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 1
        assert info.config.name == "NOX_TX"


# ---------------------------------------------------------------- squatting the message id


@pytest.fixture
def chain() -> Chain:
    return make_chain()


@pytest.fixture
async def pipeline(nats_server: NatsServerProcess, chain: Chain) -> AsyncIterator[Harness]:
    deployment = common_pb2.Deployment(
        chain_id=chain.backend.chain_id,
        registry_address=chain.registry_address,
        compute_address=chain.compute_address,
        acl_address=to_bytes20(chain.deployment.acl),
    )
    h = Harness(role_settings(nats_server, "orchestrator"), deployment)
    await h.start_gateway()
    try:
        yield h
    finally:
        await h.close()


def _store(chain: Chain) -> CursorStore:
    return CursorStore(
        sa.create_engine("sqlite://"),
        chain_id=chain.backend.chain_id,
        compute_address=chain.compute_address,
    )


async def _work(runner: FakeRunner, want: int) -> list[bytes]:
    done: list[bytes] = []
    await runner.heartbeat(operators=range(19))
    for _ in range(20):
        for c in await runner.claim(max_tasks=4, wait=1):
            assert await runner.submit(c) == S.TASK_STATE_STORED
            done.append(c.assignment.task_id)
        if len(done) >= want:
            return done
    return done


async def test_junk_squatting_the_next_transaction_id_cannot_suppress_it(
    nats_server: NatsServerProcess, pipeline: Harness, chain: Chain
) -> None:
    h = pipeline
    _, receipt = chain.encrypt(5)
    tx = bytes(receipt["transactionHash"])
    chain_id = chain.backend.chain_id
    ing = role_settings(nats_server, "ingestor")
    # the attacker, a compromised publisher, is faster than the ingestor
    nc = await _raw(ing)
    async with open_queue(ing) as conn:
        try:
            await nc.jetstream().publish(
                ing.tx_subject(chain_id),
                b"junk",
                headers={"Nats-Msg-Id": transaction_msg_id(chain_id, tx)},
            )
        finally:
            await nc.close()
        ingestor = make_ingestor(chain, conn, _store(chain), h.ingestor)
        await drain(ingestor)
        assert ingestor.queue_metrics.squatted._value.get() == 1
    node = await h.orchestrator()
    expected = task_id_for(chain_id, tx)
    assert await _work(h.runner(node), 1) == [expected]
    assert h.gateway.calls == [expected]  # the real transaction was computed and stored
    async with open_queue(nats_server.settings("admin")) as admin:
        [parked] = await read_parked(admin, 1)
    assert parked.reason == "UNDECODABLE"
    assert parked.data == b"junk"


async def test_old_signed_message_replayed_under_the_next_id_is_rejected(
    nats_server: NatsServerProcess, pipeline: Harness, chain: Chain
) -> None:
    h = pipeline
    chain_id = chain.backend.chain_id
    ing = role_settings(nats_server, "ingestor")
    _, first = chain.encrypt(5)
    async with open_queue(ing) as conn:
        ingestor = make_ingestor(chain, conn, _store(chain), h.ingestor)
        await drain(ingestor)
        node = await h.orchestrator()
        runner = h.runner(node)
        first_id = task_id_for(chain_id, bytes(first["transactionHash"]))
        assert await _work(runner, 1) == [first_id]
        # the next transaction is mined; the attacker replays the first, genuinely signed
        # message (read back from the stream) under the second transaction's id
        _, second = chain.encrypt(6)
        second_tx = bytes(second["transactionHash"])
        old = await conn.js.get_msg(ing.stream, 1)
        nc = await _raw(ing)
        try:
            await nc.jetstream().publish(
                ing.tx_subject(chain_id), bytes(old.data),
                headers={"Nats-Msg-Id": transaction_msg_id(chain_id, second_tx)},
            )  # fmt: skip
        finally:
            await nc.close()
        await drain(ingestor)
        second_id = task_id_for(chain_id, second_tx)
        assert await _work(runner, 1) == [second_id]
    assert h.gateway.calls == [first_id, second_id]
    async with open_queue(nats_server.settings("admin")) as admin:
        [parked] = await read_parked(admin, 1)
    assert parked.reason == "QUEUE_MESSAGE_ID_MISMATCH"
    assert parked.original_msg_id == transaction_msg_id(chain_id, second_tx)
    counted = node.registry.get_sample_value(
        "nox_queue_parked_total", {"reason": "QUEUE_MESSAGE_ID_MISMATCH"}
    )
    assert counted == 1
