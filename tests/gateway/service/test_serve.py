"""The production wiring (`build_gateway` from `GatewaySettings`, what `noxctl serve gateway`
runs) against anvil over JSON-RPC: registry view with DCAP verification of simulated-TDX
quotes, ACL, KMS nodes checked against the registry's key set, the store migrated.

Real: anvil and the contracts, the quotes and their off-chain verification, the gateway's
gRPC server and its own registration (in-memory enclave key, operator pays; NOT_SERVING
until registered), the 2-of-3 KMS servers. The KMS nodes' own registry is a dictionary (they are
not what is tested here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from gateway_servers import Kms
from gateway_support import (
    GATEWAY,
    KMS,
    ORCHESTRATOR,
    RUNNER,
    UINT64,
    Actors,
    Clock,
    FakeRegistry,
    open_gateway_answer,
    open_material,
    u64,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from attestation.binding import ext_data, report_data_for
from attestation.measurements import Measurements
from attestation.providers.pccs import SimulatedPccs
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.artifacts import load_artifact
from nox.chain.backend import ChainBackend
from nox.chain.contracts import RegistryClient, to_bytes20, to_checksum
from nox.chain.deploy import deploy_all
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.crypto.threshold import deal
from nox.gateway.config import GatewaySettings
from nox.gateway.server import build_gateway, keep_registered, self_registration
from nox.gateway.service import SERVICE_NAME
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import gateway_pb2, gateway_pb2_grpc, kms_pb2_grpc

pytestmark = pytest.mark.integration
MEASUREMENTS = Measurements(mr_td=DEFAULT_MR_TD)


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


def _register(
    backend: ChainBackend, registry: RegistryClient, sim: SimulatedTdx, role: int
) -> EnclaveKey:
    key = EnclaveKey.generate()
    account: LocalAccount = Account.from_key(key.secret_bytes())
    backend.fund(account.address)
    operator = to_bytes20(backend.accounts[1].address)
    endpoint = "https://node.example:7443"
    ext = ext_data(role, operator, backend.chain_id, to_bytes20(registry.address), endpoint)
    quote = sim.quote(report_data_for(key.address, ext), measurements=MEASUREMENTS)
    registry.register(quote, role, operator, endpoint, account)
    return key


async def test_a_gateway_wired_from_settings_serves(anvil: AnvilProcess, tmp_path: Path) -> None:
    backend = anvil.backend()
    deployment = deploy_all(backend)
    registry = RegistryClient(backend, deployment.registry)
    owner = backend.deployer
    for role in (ORCHESTRATOR, RUNNER, GATEWAY, KMS):
        registry.allow_workload(role, MEASUREMENTS.workload_id, owner)
    sim = SimulatedTdx.create(tmp_path / "sim")
    orchestrator, runner = (_register(backend, registry, sim, r) for r in (ORCHESTRATOR, RUNNER))
    kms_keys = [_register(backend, registry, sim, KMS) for _ in range(3)]
    dealing = deal(2, 3)
    registry.set_kms_keys(dealing.public.public_key, dealing.public.public_shares, 2, owner)
    domain = Domain(chain_id=backend.chain_id, verifying_contract=to_bytes20(deployment.registry))

    # The KMS nodes (their registry is a table: they are not under test here).
    kms_registry = FakeRegistry()
    for key, role in ((runner, RUNNER), (orchestrator, ORCHESTRATOR)):
        kms_registry.roles[key.address] = role
    kms_registry.roles.update({k.address: KMS for k in kms_keys})
    servers, channels = [], []
    for share, key in zip(dealing.shares, kms_keys, strict=True):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public), enclave_key=key, domain=domain,
            registry=kms_registry, replay=MemoryReplayCache(),
        )  # fmt: skip
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
    kms = Kms(dealing, kms_keys, servers, channels)

    operator_file = tmp_path / "operator.key"
    operator_file.write_text(anvil.private_keys[3])
    # Peers' collateral comes from a PCCS (here serving the dev PKI's collateral).
    pccs = SimulatedPccs(lambda _fmspc: sim.collateral()).start()
    settings = GatewaySettings(
        port=0,
        store_url=f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        chain_id=backend.chain_id,
        chain_rpc_url=anvil.url,
        registry_address=to_checksum(deployment.registry),
        compute_address=to_checksum(deployment.compute),
        acl_address=to_checksum(deployment.acl),
        operator_key_file=operator_file,
        kms_endpoints=tuple(s.target for s in servers),
        pccs_url=pccs.url,
        collateral_cache_dir=tmp_path / "collateral",
        dangerous_simulated_tdx_dir=tmp_path / "sim",
        registry_refresh_seconds=0.5,
    )
    with capture_logs() as logs:
        server, ctx = await build_gateway(settings)
    [policy] = [e for e in logs if e["event"] == "attestation.policy"]  # the policy in force
    assert policy["service"] == "gateway"
    assert policy["roots"] == "intel+simulated-dev"
    # the KMS nodes' quotes were verified with collateral fetched from that PCCS
    assert "/tdx/certification/v4/tcb" in pccs.requests
    assert ctx.attestation is not None
    assert ctx.attestation.live is not None
    registration = self_registration(settings, ctx, server.target)
    assert registration is not None
    await server.start()
    channel = create_channel(server.target)
    stop = asyncio.Event()
    keeper = None
    try:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert registry.node(ctx.address) is None  # the key is new: nobody registered it
        kms_registry.roles[ctx.address] = GATEWAY  # the KMS nodes' table (not under test)
        keeper = asyncio.create_task(keep_registered(registration, ctx, server, stop))
        async for status in health.Watch(check):
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                break
        record = registry.node(ctx.address)  # the gateway registered its own key
        assert record is not None
        assert record.role == GATEWAY
        assert record.operator == to_bytes20(Account.from_key(anvil.private_keys[3]).address)
        gateway = ctx.key
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        info = await stub.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
        assert info.node.enclave_address == gateway.address
        assert info.node.ready
        assert info.kms_public_key == dealing.public.public_key
        # An input whose proof NoxCompute (on anvil) accepts.
        user = Account.create()
        backend.fund(user.address)
        harness_address = backend.deploy(load_artifact("NoxHarness"), deployment.compute)
        harness = backend.contract(load_artifact("NoxHarness"), harness_address)
        assert info.enclave_public_key == gateway.public_key
        sent = await stub.EncryptInput(
            sealed_input_request(
                info.enclave_public_key, u64(9), chain_id=backend.chain_id, type_code=UINT64,
                owner=to_bytes20(user.address), application=to_bytes20(harness_address),
            )
        )  # fmt: skip
        receipt = backend.transact(
            harness.functions.validate(sent.handle, sent.handle_proof, UINT64), user
        )
        (validated,) = harness.events.Validated().process_receipt(receipt)
        assert bytes(validated.args.handle) == sent.handle
        # A registered runner gets the operand, checked through the on-chain registry.
        clock = Clock(int(time.time()))
        actors = Actors(orchestrator, runner, gateway.address, clock, domain)
        task = b"\x05" * 32
        assignment = actors.assignment(task, [sent.handle], [])
        requester = RequesterKey.generate_secp256k1()
        response = await stub.GetOperands(
            actors.operands_request(assignment, [sent.handle], requester, task_id=task)
        )
        answer = open_gateway_answer(
            response.envelope, gateway_pb2.GetOperandsResponsePayload, gateway=gateway.address,
            audience=runner.address, now=clock.now, domain=domain,
        )  # fmt: skip
        assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
        assert open_material(
            answer.operands, answer.kms_delegations, requester, public=dealing.public,
            gateway=gateway.address, registry=kms_registry, now=clock.now, domain=domain,
        ) == [u64(9)]  # fmt: skip
    finally:
        stop.set()
        if keeper is not None:
            await keeper
        await channel.close(None)
        await server.stop(0)
        await ctx.store.close()
        ctx.attestation.close()
        pccs.stop()
        for s in kms.servers:
            await s.stop(0)
