"""`noxctl serve runner`: wire a runner process together and serve its status.

`RunnerServicer` answers the public `RunnerService.GetRunnerStatus` from the agent's state;
gRPC health follows readiness (attested, registered, connected to the orchestrator).
`serve` builds one agent from `RunnerSettings` (fresh enclave key, chain, registry view with
off-chain quote verification, quote provider, orchestrator and gateway channels) and runs it
with its status server; `run` starts `processes` such agents, one OS process each ("one
process per core"), each with its own enclave key and registration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from nox.attest.bootstrap import build_attestation
from nox.chain.backend import RpcChain
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.chain.registrar import ChainRegistrar, LockedDirectory
from nox.cli_support import serve_commands
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import ThresholdPublicKey
from nox.errors import NoxError
from nox.kms.keys import load_public_file
from nox.rpc import RequestLimits, ServiceSpec, create_server
from nox.rpc.logging import get_logger
from nox.rpc.peers import PeerChannel, open_peer
from nox.rpc.ratls import AttestedDialer
from nox.runner.agent import RunnerAgent
from nox.runner.config import RunnerSettings
from nox.runner.executor import ExecutorConfig, TaskExecutor
from nox.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
)

SERVICE_NAME = "nox.v1.RunnerService"

__all__ = ["SERVICE_NAME", "RunnerServicer", "register_commands", "run", "serve", "status_spec"]


class RunnerServicer(runner_pb2_grpc.RunnerServiceServicer):
    """The public status of one runner agent."""

    def __init__(self, agent: RunnerAgent) -> None:
        self.agent = agent

    async def GetRunnerStatus(
        self,
        request: runner_pb2.GetRunnerStatusRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> runner_pb2.GetRunnerStatusResponse:
        """Public: identity, registration, readiness and load."""
        del request, context
        return self.agent.status()


def status_spec(agent: RunnerAgent) -> ServiceSpec:
    """The RunnerService to pass to `nox.rpc.create_server` (not serving until ready)."""
    return ServiceSpec(
        SERVICE_NAME,
        runner_pb2_grpc.add_RunnerServiceServicer_to_server,
        RunnerServicer(agent),
        serving=False,
        request_limits=RequestLimits(default=4096),  # GetRunnerStatus's request is empty
    )


def _kms_public(settings: RunnerSettings, client: RegistryClient) -> ThresholdPublicKey:
    if settings.kms_public_file is not None:
        return load_public_file(settings.kms_public_file)
    keys = client.kms_keys()
    # The registry publishes PK, the public shares and t (epoch 0); proofs need only those.
    return ThresholdPublicKey(
        threshold=keys.threshold,
        public_key=keys.public_key,
        public_shares=tuple(keys.public_shares),
        commitments=(),
    )


async def _peer_address(call: Callable[[], Any], stop: asyncio.Event, log: Any) -> bytes | None:
    """The enclave address a peer's public info call reports (retried until it answers)."""
    while not stop.is_set():
        try:
            info = await call()
            return bytes(info.node.enclave_address)
        except (NoxError, grpc.aio.AioRpcError) as exc:
            log.warning("runner.peer_unreachable", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)
    return None


async def serve(settings: RunnerSettings, *, stop: asyncio.Event | None = None) -> int:
    """Run one runner agent and its status server until `stop` (or SIGINT/SIGTERM)."""
    log = get_logger("nox.runner")
    stop = stop if stop is not None else asyncio.Event()
    enclave = EnclaveKey.generate()
    if settings.operator_key_file is None:
        raise SystemExit("NOX_RUNNER_OPERATOR_KEY_FILE is required")
    operator_key = settings.operator_key_file.read_text().strip()
    backend = RpcChain(settings.chain_rpc_url, private_keys=[operator_key])
    client = RegistryClient(backend, settings.registry_address)
    attestation = build_attestation(settings)
    attestation.log_policy(log, service="runner")
    attestation.start()
    lock = threading.Lock()
    view = LockedDirectory(attestation.registry_view(client), lock)
    domain = Domain(chain_id=backend.chain_id, verifying_contract=to_bytes20(client.address))
    config = ExecutorConfig(
        domain=domain,
        kms_public=_kms_public(settings, client),
        compute_address=to_bytes20(settings.compute_address),
        limits=settings.limits(),
    )
    replay = MemoryReplayCache()
    executor = TaskExecutor(key=enclave, config=config, directory=view, replay=replay)
    dialer = AttestedDialer(view, domain, lambda: int(time.time()))
    peers: list[PeerChannel] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        orchestrator_peer = await open_peer(
            settings.orchestrator_endpoint, settings.orchestrator_channel_settings(),
            attested=dialer if settings.orchestrator_attested_tls else None,
            role=common_pb2.ROLE_ORCHESTRATOR, stop=stop,
        )  # fmt: skip
        gateway_peer = await open_peer(
            settings.gateway_endpoint, settings.gateway_channel_settings(),
            attested=dialer if settings.gateway_attested_tls else None,
            role=common_pb2.ROLE_GATEWAY, stop=stop,
        )  # fmt: skip
        peers = [p for p in (orchestrator_peer, gateway_peer) if p is not None]
        if orchestrator_peer is None or gateway_peer is None:
            return 0
        orchestrator = orchestrator_peer.stub(orchestrator_pb2_grpc.OrchestratorServiceStub)
        gateway = gateway_peer.stub(gateway_pb2_grpc.GatewayServiceStub)
        orchestrator_address = await _peer_address(
            lambda: orchestrator.GetOrchestratorInfo(
                orchestrator_pb2.GetOrchestratorInfoRequest(), timeout=5
            ),
            stop,
            log,
        )
        gateway_address = await _peer_address(
            lambda: gateway.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest(), timeout=5),
            stop,
            log,
        )
        if orchestrator_address is None or gateway_address is None:
            return 0
        agent = RunnerAgent(
            executor=executor,
            settings=settings.agent_settings(),
            directory=view,
            registrar=ChainRegistrar(
                client, enclave=enclave, operator=backend.accounts[0], lock=lock
            ),
            quote_provider=attestation.provider,
            orchestrator=orchestrator,
            gateway=gateway,
            orchestrator_address=orchestrator_address,
            gateway_address=gateway_address,
            replay=replay,
            orchestrator_endpoint=settings.orchestrator_endpoint,
            clock=lambda: int(time.time()),
            logger=log,
        )
        server = create_server(
            [status_spec(agent)],
            settings=settings.status_server_settings(),
        )
        attestation.register_metrics(server.metrics.registry)
        async with server:
            print(
                f"runner 0x{enclave.address.hex()} status on {server.target}",
                flush=True,
            )
            await run_with_health(agent, server, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for peer in peers:
            await peer.close()
        attestation.close()
    return 0


async def run_with_health(agent: RunnerAgent, server: Any, stop: asyncio.Event) -> None:
    """Run the agent until `stop`, publishing its readiness as gRPC health every second."""
    loop_task = asyncio.create_task(agent.run(stop))
    try:
        while not loop_task.done():
            await server.set_serving(SERVICE_NAME, agent.ready and agent.orchestrator_connected)
            await asyncio.wait([loop_task], timeout=1.0)
    finally:
        stop.set()
        await loop_task


def _child(settings_json: str) -> None:
    settings = RunnerSettings.model_validate_json(settings_json)
    sys.exit(asyncio.run(serve(settings)))


def run(settings: RunnerSettings) -> int:
    """Run `settings.processes` agents, each in its own process (spawned: nothing, least of
    all a key, is inherited); one process runs in this one."""
    if settings.processes == 1:
        return asyncio.run(serve(settings))
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_child, args=(settings.for_process(i).model_dump_json(),), name=f"runner-{i}"
        )
        for i in range(settings.processes)
    ]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join()
    # The first failure (a negative code is a signal the child did not handle), else 0.
    return next((c.exitcode for c in children if c.exitcode), 0)


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve runner` to noxctl (creating `serve` if no other service added it yet)."""
    services = serve_commands(subparsers)
    runner = services.add_parser(
        "runner", help="a task runner (settings: NOX_RUNNER_* environment variables)"
    )
    runner.add_argument(
        "--processes",
        type=int,
        default=None,
        help="agent processes, each with its own enclave key (default: NOX_RUNNER_PROCESSES)",
    )
    runner.set_defaults(func=_serve_runner)


def _serve_runner(args: argparse.Namespace) -> int:
    settings = RunnerSettings()
    if args.processes is not None:
        settings = settings.model_copy(update={"processes": max(1, args.processes)})
    return run(settings)
