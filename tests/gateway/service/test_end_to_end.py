"""Issue 6's end-to-end test: real gRPC, a real 2-of-3 KMS, the embedded chain.

Real components: the gateway server and store (SQLite file), the three KmsServicers over
gRPC, the embedded EVM with NoxRegistry, ACL, NoxCompute and the NoxHarness test app, the
simulated-TDX quotes every enclave registers with, and `RegistryView` verifying them
off-chain (full DCAP path against the simulated root). Played by the test: the user, the
orchestrator and the runner (the runner's side only: it signs requests, opens KMS partials,
adds two numbers and encrypts the result).

Flow: a user encrypts an input and the contract accepts the proof (NoxHarness.validate ->
NoxCompute.validateInputProof); the contract computes add(x, y) on-chain; a task stores x
and y, then the runner gets the operands of the add task (and not of any other handle),
its result is stored once (a re-publication is unchanged); a viewer the contract named
decrypts it, a non-viewer gets PERMISSION_DENIED; the handle made public is publicly
decrypted; a revoked runner gets nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from gateway_support import (
    UINT64,
    Actors,
    Clock,
    authorization,
    expect,
    open_gateway_answer,
    open_material,
    u64,
)

from attestation.binding import ext_data, report_data_for
from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.artifacts import load_artifact
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import (
    AclClient,
    ComputeClient,
    RegistryClient,
    to_bytes20,
    to_checksum,
)
from nox.chain.deploy import deploy_all
from nox.chain.exceptions import ContractReverted
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, SqlReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.crypto.threshold import deal
from nox.gateway.context import Deployment, GatewayContext, Serialized
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.rpc.server import RpcServer
from nox.v1 import gateway_pb2, gateway_pb2_grpc, kms_pb2_grpc

pytestmark = pytest.mark.integration

ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4
OP_ADD = 1
MEASUREMENTS = Measurements(mr_td=DEFAULT_MR_TD)


@dataclass
class Chain:
    backend: EmbeddedChain
    registry: RegistryClient
    acl: AclClient
    compute: ComputeClient
    harness: object
    sim: SimulatedTdx
    owner: LocalAccount
    domain: Domain

    def account(self, key: EnclaveKey) -> LocalAccount:
        account: LocalAccount = Account.from_key(key.secret_bytes())
        self.backend.fund(account.address)
        return account

    def register(self, role: int) -> EnclaveKey:
        """A fresh enclave registered by itself in `role` with a bound simulated-TDX quote."""
        key = EnclaveKey.generate()
        operator = to_bytes20(self.backend.accounts[1].address)
        endpoint = f"https://node-{key.address.hex()[:8]}.example:7443"
        ext = ext_data(role, operator, self.backend.chain_id,
                       to_bytes20(self.registry.address), endpoint)  # fmt: skip
        quote = self.sim.quote(report_data_for(key.address, ext), measurements=MEASUREMENTS)
        self.registry.register(quote, role, operator, endpoint, self.account(key))
        return key


@dataclass
class Net:
    chain: Chain
    views: Serialized
    clock: Clock
    gateway: EnclaveKey
    orchestrator: EnclaveKey
    runner: EnclaveKey
    stub: gateway_pb2_grpc.GatewayServiceStub
    ctx: GatewayContext
    public: object


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    backend = EmbeddedChain()
    deployment = deploy_all(backend)
    owner = backend.deployer
    registry = RegistryClient(backend, deployment.registry)
    compute = ComputeClient(backend, deployment.compute)
    harness_address = backend.deploy(load_artifact("NoxHarness"), compute.address)
    sim = SimulatedTdx.generate(clock=lambda: float(backend.now()))
    domain = Domain(chain_id=backend.chain_id, verifying_contract=to_bytes20(deployment.registry))
    chain = Chain(backend, registry, AclClient(backend, deployment.acl), compute,
                  backend.contract(load_artifact("NoxHarness"), harness_address), sim, owner,
                  domain)  # fmt: skip
    for role in (ORCHESTRATOR, RUNNER, GATEWAY, KMS):
        registry.allow_workload(role, MEASUREMENTS.workload_id, owner)
    gateway, orchestrator, runner = (chain.register(r) for r in (GATEWAY, ORCHESTRATOR, RUNNER))
    kms_keys = [chain.register(KMS) for _ in range(3)]
    dealing = deal(2, 3)
    registry.set_kms_keys(dealing.public.public_key, dealing.public.public_shares, 2, owner)
    clock = Clock(backend.now())
    attestation = build_attestation(AttestationSettings(), simulated=sim)
    view = attestation.registry_view(registry, refresh_interval=0.0)
    views = Serialized(view, chain.acl)

    servers: list[RpcServer] = []
    channels: list[grpc.aio.Channel] = []
    endpoints = []
    for i, (share, key) in enumerate(zip(dealing.shares, kms_keys, strict=True), start=1):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=domain,
            registry=views,
            replay=MemoryReplayCache(),
            clock=clock,
            is_publicly_decryptable=views.is_publicly_decryptable,
        )
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channel = create_channel(server.target)
        channels.append(channel)
        endpoints.append(
            KmsNodeEndpoint(i, key.address, kms_pb2_grpc.KmsServiceStub(channel).Delegate)
        )
    store = AsyncHandleStore(
        HandleStore.open(StoreSettings(url=f"sqlite:///{tmp_path / 'gw.sqlite3'}"), clock=clock)
    )
    ctx = GatewayContext(
        key=gateway,
        deployment=Deployment(
            backend.chain_id,
            to_bytes20(deployment.registry),
            to_bytes20(deployment.compute),
            to_bytes20(deployment.acl),
        ),
        store=store,
        directory=views,
        acl=views,
        kms=KmsFanout(endpoints, key=gateway, domain=domain, public=dealing.public,
                      directory=views, clock=clock),
        replay=SqlReplayCache(store.engine),
        clock=clock,
    )  # fmt: skip
    await derive_tag_key(ctx)
    server, _ = create_gateway_server(
        ctx,
        server_settings=ServerSettings(graceful_shutdown_seconds=0),
        rate_limit=RateLimit(1000.0, 1000),
    )
    await server.start()
    servers.append(server)
    channel = create_channel(server.target)
    channels.append(channel)
    try:
        yield Net(chain, views, clock, gateway, orchestrator, runner,
                  gateway_pb2_grpc.GatewayServiceStub(channel), ctx, dealing.public)  # fmt: skip
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()


def transact(net: Net, call: object, sender: LocalAccount | None = None) -> object:
    with net.views.lock:  # the KMS and gateway threads use the same in-process EVM
        return net.chain.backend.transact(call, sender)  # type: ignore[arg-type]


def harness_encrypt(net: Net, value: int) -> bytes:
    harness = net.chain.harness
    receipt = transact(net, harness.functions.encrypt(value.to_bytes(32, "big"), UINT64))  # type: ignore[attr-defined]
    (event,) = harness.events.Made().process_receipt(receipt)  # type: ignore[attr-defined]
    return bytes(event.args.handle)


async def test_issue_6_end_to_end(net: Net) -> None:
    chain, stub, clock = net.chain, net.stub, net.clock
    harness = chain.harness
    actors = Actors(net.orchestrator, net.runner, net.gateway.address, clock, chain.domain)
    kms_public_key = net.ctx.kms.public.public_key

    # 1. A user encrypts an input; the application contract accepts the proof on-chain.
    user = EnclaveKey.generate()
    user_account = chain.account(user)
    sent = await stub.EncryptInput(
        sealed_input_request(
            net.gateway.public_key, u64(1000), chain_id=chain.backend.chain_id,
            type_code=UINT64, owner=user.address,
            application=to_bytes20(harness.address),  # type: ignore[attr-defined]
        )
    )  # fmt: skip
    receipt = transact(
        net,
        harness.functions.validate(sent.handle, sent.handle_proof, UINT64),
        user_account,  # type: ignore[attr-defined]
    )
    (validated,) = harness.events.Validated().process_receipt(receipt)  # type: ignore[attr-defined]
    assert bytes(validated.args.handle) == sent.handle
    assert validated.args.allowedInTx
    other = chain.account(EnclaveKey.generate())
    with pytest.raises(ContractReverted) as reverted:  # the proof is the user's, for this app
        transact(net, harness.functions.validate(sent.handle, sent.handle_proof, UINT64), other)  # type: ignore[attr-defined]
    assert reverted.value.error_name == "ProofOwnerMismatch"

    # 2. The contract computes z = x + y on-chain; task 1 stores x and y (PlaintextToEncrypted).
    x, y = harness_encrypt(net, 7), harness_encrypt(net, 35)
    receipt = transact(net, harness.functions.run(OP_ADD, [x, y]))  # type: ignore[attr-defined]
    (measured,) = harness.events.Measured().process_receipt(receipt)  # type: ignore[attr-defined]
    (z,) = [bytes(h) for h in measured.args.outputs]
    task1, task2 = b"\x01" * 32, b"\x02" * 32
    make = actors.assignment(task1, [], [x, y])
    values = [(x, u64(7)), (y, u64(35))]
    await stub.StoreResults(
        actors.store_request(task1, [actors.execution(make, task1, values, kms_public_key)])
    )

    # 3. The runner gets the operands of its assigned task, and not of any other handle.
    add = actors.assignment(task2, [x, y], [z])
    requester = RequesterKey.generate_secp256k1()
    response = await stub.GetOperands(
        actors.operands_request(add, [x, y], requester, task_id=task2)
    )
    answer = open_gateway_answer(
        response.envelope, gateway_pb2.GetOperandsResponsePayload, gateway=net.gateway.address,
        audience=net.runner.address, now=clock.now, domain=chain.domain,
    )  # fmt: skip
    assert isinstance(answer, gateway_pb2.GetOperandsResponsePayload)
    a, b = open_material(answer.operands, answer.kms_delegations, requester, public=net.public,  # type: ignore[arg-type]
                         gateway=net.gateway.address, registry=net.views, now=clock.now,
                         domain=chain.domain)  # fmt: skip
    assert (a, b) == (u64(7), u64(35))
    await expect(
        stub.GetOperands(actors.operands_request(add, [x, sent.handle], requester, task_id=task2)),
        grpc.StatusCode.PERMISSION_DENIED,
        "HANDLE_NOT_IN_ASSIGNMENT",
    )
    total = u64(int.from_bytes(a, "big") + int.from_bytes(b, "big"))

    # 4. The result is stored once; the re-publication is unchanged.
    for expected in (gateway_pb2.STORE_OUTCOME_CREATED, gateway_pb2.STORE_OUTCOME_UNCHANGED):
        stored = await stub.StoreResults(actors.store_request(
            task2, [actors.execution(add, task2, [(z, total)], kms_public_key)]))  # fmt: skip
        payload = gateway_pb2.StoreResultsResponsePayload.FromString(stored.envelope.payload)
        assert [s.outcome for s in payload.stored_handles] == [expected]

    # 5. A viewer named by the contract decrypts; a non-viewer gets PERMISSION_DENIED.
    viewer, stranger = EnclaveKey.generate(), EnclaveKey.generate()
    transact(net, harness.functions.share(z, to_checksum(viewer.address)))  # type: ignore[attr-defined]
    key = RequesterKey.generate_secp256k1()
    got = await stub.Decrypt(gateway_pb2.DecryptRequest(
        authorization=authorization(viewer, key, now=clock.now, domain=chain.domain),
        handles=[z]))  # fmt: skip
    assert open_material(got.ciphertexts, got.kms_delegations, key, public=net.public,  # type: ignore[arg-type]
                         gateway=net.gateway.address, registry=net.views, now=clock.now,
                         domain=chain.domain) == [total]  # fmt: skip
    await expect(
        stub.Decrypt(gateway_pb2.DecryptRequest(
            authorization=authorization(stranger, key, now=clock.now, domain=chain.domain),
            handles=[z])),
        grpc.StatusCode.PERMISSION_DENIED,
        "ACL_DENIED",
    )  # fmt: skip

    # 6. Made publicly decryptable on-chain by an admin, z is publicly decrypted with a proof.
    await expect(
        stub.PublicDecrypt(gateway_pb2.PublicDecryptRequest(handles=[z])),
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_PUBLICLY_DECRYPTABLE",
    )
    transact(net, chain.acl.fn.allowPublicDecryption(z), chain.account(viewer))
    public = await stub.PublicDecrypt(gateway_pb2.PublicDecryptRequest(handles=[z]))
    assert public.decryptions[0].plaintext == total

    # 7. A revoked runner gets nothing, even with a valid assignment.
    transact(net, chain.registry.fn.revokeEnclave(to_checksum(net.runner.address)), chain.owner)
    await expect(
        stub.GetOperands(actors.operands_request(add, [x, y], requester, task_id=task2)),
        grpc.StatusCode.PERMISSION_DENIED,
        "REVOKED",
    )
