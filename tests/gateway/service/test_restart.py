"""A gateway restarted on the same database (SQLite file or PostgreSQL) loses nothing:
stored values, task publications and the seen-nonce set all survive."""

from __future__ import annotations

import grpc
import pytest
from gateway_servers import Kms, start_gateway, stop_gateway
from gateway_support import (
    GATEWAY,
    ORCHESTRATOR,
    RUNNER,
    UINT64,
    Clock,
    FakeAcl,
    FakeRegistry,
    encrypt_request,
    expect,
    open_gateway_answer,
    open_material,
    result_handle,
    u64,
)

from nox.crypto.delegation import RequesterKey
from nox.v1 import gateway_pb2

TASK = b"\x0c" * 32


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]
)
def database(request: pytest.FixtureRequest, store_url: str) -> str:
    if request.param == "sqlite":
        return store_url
    return str(request.getfixturevalue("pg_url"))


async def test_restart_loses_nothing(
    database: str, clock: Clock, registry: FakeRegistry, acl: FakeAcl, kms: Kms
) -> None:
    key = registry.enrol(GATEWAY)
    orchestrator, runner = registry.enrol(ORCHESTRATOR), registry.enrol(RUNNER)

    async def start():  # type: ignore[no-untyped-def]
        return await start_gateway(
            store_url=database, clock=clock, registry=registry, acl=acl, kms=kms, key=key,
            orchestrator=orchestrator, runner=runner,
        )  # fmt: skip

    gw = await start()
    try:
        a = (
            await gw.stub.EncryptInput(encrypt_request(gw.key.public_key, plaintext=u64(1234)))
        ).handle
        out = [result_handle(UINT64)]
        assignment = gw.actors.assignment(TASK, [a], out)
        execution = gw.actors.execution(assignment, TASK, [(out[0], u64(5))], gw.public.public_key)
        await gw.stub.StoreResults(gw.actors.store_request(TASK, [execution]))
        requester = RequesterKey.generate_secp256k1()
        used = gw.actors.operands_request(assignment, [a], requester, task_id=TASK)
        await gw.stub.GetOperands(used)
        before = await gw.ctx.store.get([a, *out])
    finally:
        await stop_gateway(gw)

    gw = await start()  # a new server and store over the same database
    try:
        assert await gw.ctx.store.get([a, *out]) == before
        status = await gw.stub.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=[a]))
        assert status.statuses[0].stored
        # the seen nonce survived: the old request is still a replay
        await expect(gw.stub.GetOperands(used), grpc.StatusCode.UNAUTHENTICATED, "NONCE_REPLAYED")
        fresh = gw.actors.operands_request(assignment, [a], requester, task_id=TASK)
        answer = open_gateway_answer(
            (await gw.stub.GetOperands(fresh)).envelope,
            gateway_pb2.GetOperandsResponsePayload,
            gateway=key.address,
            audience=runner.address,
            now=clock.now,
        )
        assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
        assert open_material(
            answer.operands, answer.kms_delegations, requester, public=gw.public,
            gateway=key.address, registry=registry, now=clock.now,
        ) == [u64(1234)]  # fmt: skip
        # the publication survived: identical re-publication is unchanged, another value refused
        again = gw.actors.execution(assignment, TASK, [(out[0], u64(5))], gw.public.public_key)
        response = await gw.stub.StoreResults(gw.actors.store_request(TASK, [again]))
        payload = gateway_pb2.StoreResultsResponsePayload.FromString(response.envelope.payload)
        assert payload.stored_handles[0].outcome == gateway_pb2.STORE_OUTCOME_UNCHANGED
        other = gw.actors.execution(assignment, TASK, [(out[0], u64(6))], gw.public.public_key)
        await expect(
            gw.stub.StoreResults(gw.actors.store_request(TASK, [other])),
            grpc.StatusCode.ALREADY_EXISTS,
            "TASK_CONFLICT",
        )
        assert await gw.ctx.store.get([a, *out]) == before
    finally:
        await stop_gateway(gw)
