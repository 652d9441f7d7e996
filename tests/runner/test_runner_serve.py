"""`nox.runner.server.serve`, the process `noxctl serve runner` runs, wired from its settings
against anvil (a JSON-RPC chain, as in production): it loads the simulated TDX dev PKI,
trusts the dev root only because the settings name it, registers its fresh enclave key
with the operator paying, finds its peers through their public info calls, serves its
status, and executes a transfer. Orchestrator and gateway are the doubles of runner_chain.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from runner_chain import ChainRegistry, GatewayDouble, OrchestratorDouble
from runner_support import COMPUTE, assign, kms_decrypt, make_deployment, transfer_task
from structlog.testing import capture_logs

from attestation.providers.pccs import SimulatedPccs
from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.contracts import to_bytes20
from nox.kms.keys import write_public_file
from nox.rpc import ServerSettings, ServiceSpec, create_server
from nox.runner.config import RunnerSettings
from nox.runner.server import run, serve
from nox.v1 import gateway_pb2_grpc, orchestrator_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _wall() -> int:
    return int(time.time())


@pytest.fixture
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


async def test_serve_runner_registers_and_executes(anvil: AnvilProcess, tmp_path: Path) -> None:
    sim = SimulatedTdx.create(tmp_path / "sim")
    (tmp_path / "dev-root.der").write_bytes(sim.root_der)
    chain = ChainRegistry(sim, anvil.backend())
    pccs = SimulatedPccs(lambda _fmspc: sim.collateral()).start()  # peers' collateral
    dep = make_deployment(registry=chain, clock=_wall, domain=chain.domain)  # type: ignore[arg-type]
    write_public_file(tmp_path / "kms-public.json", dep.dealing.public)
    (tmp_path / "operator.key").write_text(anvil.private_keys[2])
    orch = OrchestratorDouble(dep.orchestrator, chain, chain.domain, _wall)
    gateway = GatewayDouble(dep, _wall)
    tx, _ = transfer_task(dep, 30, 100, 5)
    orch.pending.append(lambda runner: assign(dep, tx, runner=runner, now=_wall()))
    servers = [
        create_server([ServiceSpec("nox.v1.OrchestratorService",
                                   orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                                   orch)], settings=ServerSettings(graceful_shutdown_seconds=0)),
        create_server([ServiceSpec("nox.v1.GatewayService",
                                   gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                   gateway)], settings=ServerSettings(graceful_shutdown_seconds=0)),
    ]  # fmt: skip
    for server in servers:
        await server.start()
    settings = RunnerSettings(
        chain_rpc_url=anvil.url,
        registry_address=chain.client.address,
        compute_address="0x" + COMPUTE.hex(),
        operator_key_file=tmp_path / "operator.key",
        kms_public_file=tmp_path / "kms-public.json",
        orchestrator_endpoint=servers[0].target,
        gateway_endpoint=servers[1].target,
        dangerous_simulated_tdx_dir=tmp_path / "sim",
        pccs_url=pccs.url,
        claim_wait_seconds=0,
        heartbeat_seconds=0.2,
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        runner = asyncio.create_task(serve(settings, stop=stop))
        try:
            async with asyncio.timeout(60):
                while not orch.results:  # noqa: ASYNC110 - polling what the double recorded
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            assert await runner == 0
            for server in servers:
                await server.stop(0)
            pccs.stop()
    # the policy in force, once at start; peers' collateral came from the PCCS
    [policy] = [e for e in logs if e["event"] == "attestation.policy"]
    assert policy["service"] == "runner"
    assert policy["allowed_tcb_statuses"] == ["UpToDate"]
    assert policy["collateral_source"] == pccs.url
    assert "/tdx/certification/v4/tcb" in pccs.requests
    (result,) = orch.results
    values = [int.from_bytes(kms_decrypt(c, c.handle), "big") for c in result.outputs.ciphertexts]
    assert values == [70, 35, 30]
    runner_address = orch.result_signers[0]
    record = chain.client.node(runner_address)
    assert record is not None
    assert record.role == 2
    assert record.operator == to_bytes20(Account.from_key(anvil.private_keys[2]).address)


async def test_processes_run_separate_enclaves(anvil: AnvilProcess, tmp_path: Path) -> None:
    """`--processes 2`: two OS processes, each with its own enclave key and registration,
    both taking tasks from the same orchestrator."""
    sim = SimulatedTdx.create(tmp_path / "sim")
    (tmp_path / "dev-root.der").write_bytes(sim.root_der)
    chain = ChainRegistry(sim, anvil.backend())
    dep = make_deployment(registry=chain, clock=_wall, domain=chain.domain)  # type: ignore[arg-type]
    write_public_file(tmp_path / "kms-public.json", dep.dealing.public)
    (tmp_path / "operator.key").write_text(anvil.private_keys[2])
    orch = OrchestratorDouble(dep.orchestrator, chain, chain.domain, _wall)
    gateway = GatewayDouble(dep, _wall)
    seen: set[bytes] = set()

    def one_task_per_runner(runner: bytes) -> object:
        # hand out tasks to each process until both have taken one
        seen.add(runner)
        tx, _ = transfer_task(dep, 30, 100, 5)
        if len(seen) < 2:
            orch.pending.append(one_task_per_runner)
        return assign(dep, tx, runner=runner, now=_wall())

    orch.pending.append(one_task_per_runner)  # type: ignore[arg-type]
    servers = [
        create_server([ServiceSpec("nox.v1.OrchestratorService",
                                   orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
                                   orch)], settings=ServerSettings(graceful_shutdown_seconds=0)),
        create_server([ServiceSpec("nox.v1.GatewayService",
                                   gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
                                   gateway)], settings=ServerSettings(graceful_shutdown_seconds=0)),
    ]  # fmt: skip
    for server in servers:
        await server.start()
    settings = RunnerSettings(
        chain_rpc_url=anvil.url,
        registry_address=chain.client.address,
        compute_address="0x" + COMPUTE.hex(),
        operator_key_file=tmp_path / "operator.key",
        kms_public_file=tmp_path / "kms-public.json",
        orchestrator_endpoint=servers[0].target,
        gateway_endpoint=servers[1].target,
        dangerous_simulated_tdx_dir=tmp_path / "sim",
        claim_wait_seconds=0,
        heartbeat_seconds=0.2,
        processes=2,
    )
    parent = asyncio.create_task(asyncio.to_thread(run, settings))
    try:
        async with asyncio.timeout(120):
            while len(set(orch.result_signers)) < 2:  # noqa: ASYNC110 - polling the double
                await asyncio.sleep(0.1)
    finally:
        for child in multiprocessing.active_children():
            if child.name.startswith("runner-"):  # the processes `run` started, nothing else
                child.terminate()
        assert await parent == 0
        for server in servers:
            await server.stop(0)
    signers = set(orch.result_signers)
    assert len(signers) == 2
    for address in signers:
        record = chain.client.node(address)
        assert record is not None
        assert record.role == 2
