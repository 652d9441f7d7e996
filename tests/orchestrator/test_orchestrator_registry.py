"""The orchestrator against the real NoxRegistry: RegistryView on the embedded EVM, enclaves
registered with simulated TDX quotes (verified off-chain against the deployment's dev root)
through `SelfRegistration`, the orchestrator's own registration code."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from natsfix import open_queue
from orch_doubles import Harness, publish, tx_message

from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.chain.deploy import deploy_all
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.orchestrator.directory import ActiveNode, Serialized
from nox.orchestrator.registration import SelfRegistration
from nox.queue import QueueSettings
from nox.v1 import common_pb2, task_pb2

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
S = task_pb2.TaskState


class RegistryDirectory:
    """The real RegistryView (behind a lock) with the harness's `add(key, role)` shape."""

    def __init__(self) -> None:
        self.sim = SimulatedTdx.generate()
        self.backend = EmbeddedChain()
        self.deployment = deploy_all(self.backend)
        self.client = RegistryClient(self.backend, self.deployment.registry)
        workload = Measurements(mr_td=DEFAULT_MR_TD).workload_id
        for role in (1, 2, 3, 4, 5):
            self.client.allow_workload(role, workload, self.backend.deployer)
        attestation = build_attestation(AttestationSettings(), simulated=self.sim)
        self.view = attestation.registry_view(self.client, refresh_interval=0.0)
        self.lock = threading.Lock()
        self.directory = Serialized(self.view)
        self.roles: dict[bytes, int] = {}

    def add(self, key: EnclaveKey, role: int) -> EnclaveKey:
        SelfRegistration(
            self.client, enclave=key, operator=self.backend.accounts[1], role=role,
            endpoint="", quote=self.sim.quote, lock=self.lock, clock=self.backend.now,
        ).register_now()  # fmt: skip
        self.roles[key.address] = role
        return key

    def revoke(self, address: bytes) -> None:
        with self.lock:
            self.client.revoke_enclave(address, self.backend.deployer)

    def require(self, address: bytes, role: int, now: int) -> object:
        return self.directory.require(address, role, now)

    def active(self, role: int, now: int) -> Sequence[ActiveNode]:
        return self.directory.active(role, now)


@pytest.fixture
async def registry_harness(queue_settings: QueueSettings) -> AsyncIterator[Harness]:
    registry = RegistryDirectory()
    deployment = common_pb2.Deployment(
        chain_id=registry.backend.chain_id,
        registry_address=to_bytes20(registry.deployment.registry),
        compute_address=to_bytes20(registry.deployment.compute),
    )
    h = Harness(queue_settings, deployment, directory=registry)
    await h.start_gateway()
    try:
        yield h
    finally:
        await h.close()


async def test_registered_enclaves_flow_and_unregistered_are_refused(
    registry_harness: Harness,
) -> None:
    h = registry_harness
    node = await h.orchestrator(registry_sweep_interval=0.2)
    runner = h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 60), int(time.time())
        )
        await runner.heartbeat()
        [claimed] = await runner.claim(wait=5)
        assert claimed.assignment.task_id == task_id
        assert await runner.submit(claimed) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]

        # a message signed by an enclave registered as a runner, not an ingestor: parked
        impostor = h.directory.add(EnclaveKey.generate(), common_pb2.ROLE_RUNNER)
        await publish(conn, impostor, h.domain, tx_message(h.deployment, 61), int(time.time()))
        assert await runner.claim(wait=1) == []

        # a runner never registered is refused by the registry check
        stranger = h.runner_for(EnclaveKey.generate(), node.target, node.address)
        with pytest.raises(NoxError) as refused:
            await stranger.heartbeat()
        assert refused.value.code.name == "PERMISSION_DENIED"


async def test_revoked_runner_loses_its_lease(registry_harness: Harness) -> None:
    h = registry_harness
    node = await h.orchestrator(registry_sweep_interval=0.2)
    doomed, other = h.runner(node), h.runner(node)
    async with open_queue(h.queue) as conn:
        task_id = await publish(
            conn, h.ingestor, h.domain, tx_message(h.deployment, 62), int(time.time())
        )
        await doomed.heartbeat()
        [first] = await doomed.claim(wait=5)
        await other.heartbeat()
        h.directory.revoke(doomed.key.address)  # governance revokes the enclave
        [again] = await other.claim(wait=10)  # the registry sweep revokes the lease
        assert again.assignment.task_id == task_id
        assert again.assignment.attempt == 2
        with pytest.raises(NoxError):
            await doomed.submit(first)  # refused: no longer a registered runner
        assert await other.submit(again) == S.TASK_STATE_STORED
        assert h.gateway.calls == [task_id]
