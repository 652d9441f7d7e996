"""`noxctl serve ingestor` as a process: it registers itself (simulated TDX) on anvil, reads
NoxCompute events and publishes messages an orchestrator accepts (registered ingestor), with
the ingestor's NATS credential; `noxctl ingestor reingest` publishes a block range again,
deduplicated against what the stream holds."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from natsfix import open_queue

from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.anvil import AnvilProcess
from nox.chain.artifacts import load_artifact
from nox.chain.contracts import ComputeClient, RegistryClient, to_bytes20
from nox.chain.deploy import deploy_all
from nox.crypto.eip712 import Domain
from nox.orchestrator.tasks import TransactionDecoder
from nox.queue import NatsServerProcess, QueueSettings

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "serve", "ingestor"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


async def test_serve_ingestor_process_publishes_registered_messages(
    anvil: AnvilProcess,
    nats_server: NatsServerProcess,
    queue_settings: QueueSettings,
    tmp_path: Path,
) -> None:
    backend = anvil.backend()
    deployment = deploy_all(backend)
    registry = RegistryClient(backend, deployment.registry)
    sim = SimulatedTdx.create(tmp_path / "sim")
    registry.allow_workload(5, Measurements(mr_td=DEFAULT_MR_TD).workload_id, backend.deployer)
    harness_address = backend.deploy(load_artifact("NoxHarness"), deployment.compute)
    harness = backend.contract(load_artifact("NoxHarness"), harness_address)
    compute = ComputeClient(backend, deployment.compute)
    receipt = backend.transact(harness.functions.encrypt((9).to_bytes(32, "big"), 35))
    [event] = compute.operations(receipt)
    (tmp_path / "root.der").write_bytes(sim.root_der)
    (tmp_path / "operator.key").write_text(anvil.private_keys[1])
    env = {
        **os.environ,
        "NOX_INGESTOR_CHAIN_RPC_URL": anvil.url,
        "NOX_INGESTOR_REGISTRY_ADDRESS": deployment.registry,
        "NOX_INGESTOR_COMPUTE_ADDRESS": deployment.compute,
        "NOX_INGESTOR_OPERATOR_KEY_FILE": str(tmp_path / "operator.key"),
        "NOX_INGESTOR_NATS_SERVERS": queue_settings.servers[0],
        "NOX_INGESTOR_DANGEROUS_SIMULATED_TDX_DIR": str(tmp_path / "sim"),
        "NOX_INGESTOR_NATS_USER": nats_server.user("ingestor").user,
        "NOX_INGESTOR_NATS_PASSWORD_FILE": str(nats_server.user("ingestor").password_file),
        "NOX_INGESTOR_DATABASE_URL": f"sqlite:///{tmp_path / 'cursor.db'}",
        "NOX_INGESTOR_INITIAL_BLOCK": "0",
        "NOX_INGESTOR_CONFIRMATIONS": "0",
        "NOX_INGESTOR_POLL_INTERVAL": "0.1",
    }
    proc = _start(env)
    try:
        async with open_queue(queue_settings) as conn:
            count = 0
            for _ in range(600):
                info = await conn.js.stream_info(queue_settings.stream)
                count = info.state.messages
                if count or proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert count == 1
            sub = await conn.js.pull_subscribe(queue_settings.tx_subjects, stream="NOX_TX")
            [msg] = await sub.fetch(1, timeout=5)
            await sub.unsubscribe()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # what an orchestrator does with it: verify against the registry (registered ingestor)
    attestation = build_attestation(AttestationSettings(), simulated=sim)
    view = attestation.registry_view(registry, refresh_interval=0.0)
    decoder = TransactionDecoder(
        domain=Domain(backend.chain_id, to_bytes20(deployment.registry)),
        compute_address=to_bytes20(deployment.compute),
        directory=view,  # type: ignore[arg-type]
        clock=lambda: float(backend.now()),
        max_ttl=8 * 86_400,
    )
    spec = decoder(bytes(msg.data))
    assert spec.message.transaction_hash == bytes(receipt["transactionHash"])
    assert list(spec.output_handles) == event.outputs
    assert spec.message.operations[0].plaintext == (9).to_bytes(32, "big")
    assert proc.returncode == 0  # SIGTERM: a clean stop
    # the operator re-ingests the range: a new, registered ingestor key signs it again; the
    # stream already holds that transaction from an active ingestor, so nothing is added
    head = str(backend.w3.eth.block_number)
    again = subprocess.run(  # noqa: ASYNC221 (the test waits for the command anyway)
        [sys.executable, "-m", "nox.cli", "ingestor", "reingest", "--from-block", "0",
         "--to-block", head],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 transaction messages (0 republished" in again.stdout
    async with open_queue(queue_settings) as conn:
        info = await conn.js.stream_info(queue_settings.stream)
        assert info.state.messages == 1
