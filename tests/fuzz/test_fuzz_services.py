"""Bad input to RunnerService and OrchestratorService over real gRPC.

RunnerService: a real `RunnerAgent` (not started: its status is what the call reports)
behind `nox.runner.server.status_spec`. OrchestratorService: a real `OrchestratorNode` on a
real nats-server, built with the orchestrator suite's Harness (gateway double). Same checks
as the gateway campaign: documented codes, one ErrorInfo with a known reason, and the
server still answers good calls afterwards. (The orchestrator keeps its state in JetStream
and memory, not in a SQL store, so there is no store snapshot here.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fuzz_support import (
    FUZZ_SETTINGS,
    LoopThread,
    Outcomes,
    Signers,
    envelopes,
    proto_messages,
    requests,
)
from hypothesis import given
from hypothesis import strategies as st

from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.rpc import ServerSettings, create_server
from nox.rpc.server import RpcServer
from nox.v1 import common_pb2, orchestrator_pb2, runner_pb2

TESTS = Path(__file__).resolve().parents[1]
for suite in ("runner", "orchestrator"):
    sys.path.insert(0, str(TESTS / suite))

pytestmark = pytest.mark.integration

RUNNER = "/nox.v1.RunnerService/"
MALFORMED = frozenset({grpc.StatusCode.INVALID_ARGUMENT})  # undecodable bytes (docs/api.md)
ORCH = "/nox.v1.OrchestratorService/"


# --------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


class _NoQuotes:
    """The agent under fuzz is never registered: asking it for a quote is a test bug."""

    def quote(self, report_data: bytes) -> bytes:
        raise AssertionError("the fuzzed runner agent asked for a quote")


@pytest.fixture(scope="module")
def runner_target(loop: LoopThread) -> Iterator[str]:
    from runner_support import make_deployment

    from nox.runner.agent import AgentSettings, RunnerAgent
    from nox.runner.server import status_spec

    dep = make_deployment()
    agent = RunnerAgent(
        executor=dep.executor(),
        settings=AgentSettings(),
        directory=dep.registry,
        registrar=None,  # type: ignore[arg-type]  # the agent is not run, only asked
        quote_provider=_NoQuotes(),
        orchestrator=None,
        gateway=None,
        orchestrator_address=dep.orchestrator.address,
        gateway_address=dep.gateway.address,
        replay=MemoryReplayCache(),
    )

    async def serve() -> RpcServer:
        server = create_server(
            [status_spec(agent)], settings=ServerSettings(graceful_shutdown_seconds=0)
        )
        await server.start()
        return server

    server = loop.run(serve())
    try:
        yield server.target
    finally:
        loop.run(server.stop(0))


def test_runner_status_bad_requests(runner_target: str) -> None:
    method = RUNNER + "GetRunnerStatus"
    outcomes = Outcomes()
    good = runner_pb2.GetRunnerStatusRequest().SerializeToString()
    with grpc.insecure_channel(runner_target) as channel:

        @FUZZ_SETTINGS
        @given(
            request=st.one_of(
                requests(good, runner_pb2.GetRunnerStatusRequest, decodable=True),
                proto_messages(runner_pb2.GetRunnerStatusRequest).map(
                    lambda m: m.SerializeToString()
                ),
            )
        )
        def run(request: bytes) -> None:
            outcomes.call(channel, method, request)

        run()
        raw = channel.unary_unary(method)(good, timeout=30)
        assert runner_pb2.GetRunnerStatusResponse.FromString(raw).node.role == 2


def test_runner_status_undecodable_requests(runner_target: str) -> None:
    """Undecodable bytes: INVALID_ARGUMENT with an ErrorInfo, never UNKNOWN (docs/api.md)."""
    method = RUNNER + "GetRunnerStatus"
    outcomes = Outcomes()
    good = runner_pb2.GetRunnerStatusRequest().SerializeToString()
    with grpc.insecure_channel(runner_target) as channel:

        @FUZZ_SETTINGS
        @given(request=requests(good, runner_pb2.GetRunnerStatusRequest, decodable=False))
        def run(request: bytes) -> None:
            outcomes.call(channel, method, request, allowed=MALFORMED)

        run()
        channel.unary_unary(method)(good, timeout=30)


# --------------------------------------------------------------------------- orchestrator


@dataclass
class Orch:
    target: str
    address: bytes
    signers: Signers
    runner: EnclaveKey


@pytest.fixture(scope="module")
def orch(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orch]:
    from orch_doubles import Harness

    from nox.queue.server import NatsServerProcess

    nats = NatsServerProcess(tmp_path_factory.mktemp("fuzz-nats") / "nats")
    nats.start()
    settings = nats.settings(
        "admin", ack_wait=1.0, max_deliver=3, publish_timeout=2.0, connect_timeout=1.0,
        initial_connect_timeout=5.0,
    )  # fmt: skip

    async def build() -> tuple[Harness, object]:
        harness = Harness(settings)
        await harness.start_gateway()
        return harness, await harness.orchestrator()

    harness, node = loop.run(build())
    runner = harness.directory.add(EnclaveKey.generate(), common_pb2.ROLE_RUNNER)
    others = (harness.ingestor, harness.gateway_key, EnclaveKey.generate())
    signers = Signers(
        harness.domain, node.address, lambda: int(time.time()), runner, others,  # type: ignore[attr-defined]
        ttl=1,  # a ClaimTasks long poll waits at most until its envelope expires
    )  # fmt: skip
    try:
        yield Orch(node.target, node.address, signers, runner)  # type: ignore[attr-defined]
    finally:
        loop.run(harness.close())
        nats.close()


ORCH_METHODS = {
    ORCH + "GetOrchestratorInfo": (orchestrator_pb2.GetOrchestratorInfoRequest, None),
    ORCH + "GetTaskStatus": (orchestrator_pb2.GetTaskStatusRequest, None),
    ORCH + "Heartbeat": (orchestrator_pb2.HeartbeatRequest, orchestrator_pb2.HeartbeatPayload),
    ORCH + "ClaimTasks": (orchestrator_pb2.ClaimTasksRequest, orchestrator_pb2.ClaimTasksPayload),
    ORCH + "SubmitResult": (
        orchestrator_pb2.SubmitResultRequest,
        orchestrator_pb2.SubmitResultPayload,
    ),
}


def _good(o: Orch, method: str) -> bytes:
    request_cls, payload_cls = ORCH_METHODS[method]
    if payload_cls is None:
        if method.endswith("GetTaskStatus"):
            return request_cls(task_id=bytes(32)).SerializeToString()  # type: ignore[call-arg]
        return request_cls().SerializeToString()
    payload = payload_cls()
    if method.endswith("Heartbeat"):
        payload = orchestrator_pb2.HeartbeatPayload(capacity=1, supported_operators=[1])
    if method.endswith("ClaimTasks"):
        payload = orchestrator_pb2.ClaimTasksPayload(max_tasks=1, wait_seconds=0)
    env = sign_envelope(
        o.runner, payload, domain=o.signers.domain, audience=o.address, now=int(time.time())
    )
    return request_cls(envelope=env).SerializeToString()  # type: ignore[call-arg]


def _structured(o: Orch, method: str) -> st.SearchStrategy[bytes]:
    request_cls, payload_cls = ORCH_METHODS[method]
    if payload_cls is None:
        return proto_messages(request_cls).map(lambda m: m.SerializeToString())
    env = envelopes(payload_cls, o.signers, depth=3)
    return env.map(lambda e: request_cls(envelope=e).SerializeToString())  # type: ignore[call-arg]


@pytest.mark.parametrize("method", list(ORCH_METHODS))
def test_orchestrator_bad_requests(orch: Orch, method: str) -> None:
    outcomes = Outcomes()
    seed = _good(orch, method)
    with grpc.insecure_channel(orch.target) as channel:

        @FUZZ_SETTINGS
        @given(
            request=st.one_of(
                requests(seed, ORCH_METHODS[method][0], decodable=True),
                _structured(orch, method),
            )
        )
        def run(request: bytes) -> None:
            outcomes.call(channel, method, request)

        run()
        _assert_serves(orch, channel, outcomes, method)


@pytest.mark.parametrize("method", list(ORCH_METHODS))
def test_orchestrator_undecodable_requests(orch: Orch, method: str) -> None:
    """Undecodable bytes: INVALID_ARGUMENT with an ErrorInfo, never UNKNOWN (docs/api.md)."""
    outcomes = Outcomes()
    seed = _good(orch, method)
    with grpc.insecure_channel(orch.target) as channel:

        @FUZZ_SETTINGS
        @given(request=requests(seed, ORCH_METHODS[method][0], decodable=False))
        def run(request: bytes) -> None:
            outcomes.call(channel, method, request, allowed=MALFORMED)

        run()
        _assert_serves(orch, channel, outcomes, method)


def _assert_serves(o: Orch, channel: grpc.Channel, outcomes: Outcomes, method: str) -> None:
    """A good call of `method` gets a documented answer (OK where a fresh one must be OK:
    the info call, a heartbeat, an immediate claim) and the info call still answers."""
    for m in (method, ORCH + "GetOrchestratorInfo"):
        err = outcomes.call(channel, m, _good(o, m))
        if not m.endswith(("GetTaskStatus", "SubmitResult")):
            assert err is None, f"{m}: a good call failed after the campaign: {err}"
