"""`serve` wired to a real JSON-RPC chain (anvil): the registry view, the published KMS keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KeyFiles, run_keygen
from contracts_support import Net, make_net
from kms_service_support import (
    GATEWAY,
    KMS,
    ORCHESTRATOR,
    RUNNER,
    Actors,
    delegate_payload,
    enclave_key,
    make_targets,
    open_answers,
)

from attestation.providers.pccs import SimulatedPccs
from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.contracts import to_bytes20
from nox.chain.exceptions import NodeNotAuthorized
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.kms.config import KmsSettings
from nox.kms.exceptions import PublicKeyMismatch
from nox.kms.node import KmsNode
from nox.kms.server import chain_views, load_share, serve
from nox.rpc import RpcServer, create_channel
from nox.v1 import kms_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as process:
        yield process


def _settings(
    net: Net, anvil: AnvilProcess, keys: KeyFiles, sim_dir: Path, index: int = 1
) -> KmsSettings:
    return KmsSettings.load(
        None,
        port=0,
        graceful_shutdown_seconds=0,
        chain_id=net.backend.chain_id,
        registry_address=net.deployment.registry,
        acl_address=net.deployment.acl,
        chain_rpc_url=anvil.url,
        share_file=keys.share(index),
        kek_file=keys.keks[index - 1],
        dangerous_simulated_tdx_dir=sim_dir,
    )


async def test_a_node_on_a_real_chain_serves_registered_callers(
    anvil: AnvilProcess, tmp_path: Path
) -> None:
    sim_dir = tmp_path / "dev-tdx"
    net = make_net(anvil.backend(), SimulatedTdx.create(sim_dir))
    keys = run_keygen(tmp_path)
    public = keys.public
    net.registry.set_kms_keys(public.public_key, public.public_shares, public.threshold, net.owner)
    allowed: set[int] = set()

    def register(role: int) -> EnclaveKey:
        account = net.register_node(role, allow=role not in allowed)
        allowed.add(role)
        return enclave_key(account)

    actors = Actors(
        Domain(chain_id=net.backend.chain_id, verifying_contract=to_bytes20(net.registry.address)),
        register(GATEWAY),
        register(RUNNER),
        register(ORCHESTRATOR),
        [register(KMS) for _ in range(3)],
        [net.backend.now()],
    )
    listening: list[tuple[KmsNode, RpcServer]] = []
    stop = asyncio.Event()
    tasks = []
    for index in (1, 2):
        started = asyncio.Event()

        def on_listening(
            node: KmsNode, server: RpcServer, started: asyncio.Event = started
        ) -> None:
            listening.append((node, server))
            started.set()

        tasks.append(
            asyncio.create_task(
                serve(
                    _settings(net, anvil, keys, sim_dir, index),
                    enclave_key=actors.kms[index - 1],
                    stop=stop,
                    signals=(),
                    on_listening=on_listening,
                )
            )
        )
        await asyncio.wait_for(started.wait(), timeout=60)
    try:
        assert [node.ready for node, _ in listening] == [True, True]  # registered, attested
        requester = RequesterKey.generate_secp256k1()
        targets = make_targets(public, 2)
        payload = delegate_payload(
            requester,
            targets,
            runner_request=actors.runner_request(requester, [t.handle for t in targets]),
        )
        answers = []
        for i, (_, server) in enumerate(listening):
            async with create_channel(server.target) as channel:
                stub = kms_pb2_grpc.KmsServiceStub(channel)
                response = await stub.Delegate(actors.sign_for(i, payload), wait_for_ready=True)
                answers.append(response.envelope)
        # The requester checks the answers' signers against the same chain.
        first = _settings(net, anvil, keys, sim_dir)
        directory, _ = chain_views(first, load_share(first))
        plaintexts, bad = open_answers(
            actors, public, directory, requester, targets, payload, answers
        )
        assert plaintexts == [t.plaintext for t in targets]
        assert bad == [(), ()]
    finally:
        stop.set()
        for task in tasks:
            await task

    # A share from another dealing than the registry's KMS keys: refused at start.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = run_keygen(other_dir)
    mismatched = _settings(net, anvil, other, sim_dir)
    with pytest.raises(PublicKeyMismatch):
        await serve(mismatched, enclave_key=actors.kms[0], stop=asyncio.Event(), signals=())


async def test_a_node_on_a_chain_starts_without_the_dev_root_and_refuses_simulated_peers(
    anvil: AnvilProcess, tmp_path: Path
) -> None:
    """Production settings (no `dangerous_*`): the node builds its registry view through the
    attestation bootstrap (Intel's root, live collateral from the PCCS) instead of refusing
    to start, and a peer registered with a simulated quote counts as unregistered."""
    sim = SimulatedTdx.create(tmp_path / "dev-tdx")
    net = make_net(anvil.backend(), sim)
    keys = run_keygen(tmp_path)
    public = keys.public
    net.registry.set_kms_keys(public.public_key, public.public_shares, public.threshold, net.owner)
    runner = enclave_key(net.register_node(RUNNER))
    pccs = SimulatedPccs(lambda _fmspc: sim.collateral()).start()
    try:
        settings = KmsSettings.load(
            None,
            port=0,
            chain_id=net.backend.chain_id,
            registry_address=net.deployment.registry,
            chain_rpc_url=anvil.url,
            share_file=keys.share(1),
            kek_file=keys.keks[0],
            pccs_url=pccs.url,
            collateral_cache_dir=tmp_path / "collateral",
        )
        directory, _ = chain_views(settings, load_share(settings))
        with pytest.raises(NodeNotAuthorized) as err:
            directory.require(runner.address, RUNNER, net.backend.now())
        assert err.value.reason == "ATTESTATION_FAILED"
        assert "/tdx/certification/v4/tcb" in pccs.requests  # the peer's platform, fetched
    finally:
        pccs.stop()
