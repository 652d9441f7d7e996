"""Three KMS nodes (2-of-3 from a real `noxctl kms keygen`) served by `nox.kms.server.serve`
over real gRPC on free ports, checking callers against the real RegistryView on the
embedded EVM (simulated-TDX quotes, verified off-chain). The public-decryption ACL check is
a set (these tests are about the KMS, not the ACL contract)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "contracts"))

from contracts_support import Net, make_net
from kms_service_support import GATEWAY, KMS, ORCHESTRATOR, RUNNER, Actors, enclave_key

from attestation.providers.simulated import SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import to_bytes20
from nox.chain.registry import RegistryView
from nox.cli import main as noxctl
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.kms.config import KmsSettings
from nox.kms.keys import load_public_file
from nox.kms.node import KmsNode
from nox.kms.server import serve
from nox.rpc import RpcServer, create_channel
from nox.v1 import kms_pb2_grpc

PUBLIC_PREFIX = b"\xee"


@dataclass
class Chain:
    net: Net
    view: RegistryView
    actors: Actors


@pytest.fixture(scope="module")
def chain() -> Chain:
    sim = SimulatedTdx.generate()
    net = make_net(EmbeddedChain(), sim)

    allowed: set[int] = set()

    def register(role: int) -> EnclaveKey:
        account = net.register_node(role, allow=role not in allowed)
        allowed.add(role)
        return enclave_key(account)

    actors = Actors(
        domain=Domain(
            chain_id=net.backend.chain_id, verifying_contract=to_bytes20(net.registry.address)
        ),
        gateway=register(GATEWAY),
        runner=register(RUNNER),
        orchestrator=register(ORCHESTRATOR),
        kms=[register(KMS) for _ in range(3)],
        clock=[net.backend.now()],
    )
    attestation = build_attestation(AttestationSettings(), simulated=sim)
    return Chain(net, attestation.registry_view(net.registry), actors)


@dataclass(frozen=True)
class KeyFiles:
    directory: Path
    keks: list[Path]
    public: ThresholdPublicKey

    def share(self, index: int) -> Path:
        return self.directory / f"share-{index}.json"


def run_keygen(directory: Path, threshold: int = 2, shares: int = 3) -> KeyFiles:
    """The dealer ceremony through the real CLI: one KEK per node, sealed share files."""
    keks = [directory / f"kek-{i}" for i in range(1, shares + 1)]
    for kek in keks:
        assert noxctl(["kms", "new-kek", "--out", str(kek)]) == 0
    args = ["kms", "keygen", "--threshold", str(threshold), "--shares", str(shares)]
    args += ["--out", str(directory)]
    for kek in keks:
        args += ["--kek-file", str(kek)]
    assert noxctl(args) == 0
    return KeyFiles(directory, keks, load_public_file(directory / "public.json"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return run_keygen(tmp_path_factory.mktemp("kms-keys"))


def node_settings(chain: Chain, keys: KeyFiles, index: int, **overrides: Any) -> KmsSettings:
    """Settings of node `index` (1-based) on a free port, as an operator would write them."""
    values: dict[str, Any] = {
        "port": 0,
        "graceful_shutdown_seconds": 0,
        "chain_id": chain.actors.domain.chain_id,
        "registry_address": "0x" + chain.actors.domain.verifying_contract.hex(),
        "share_file": keys.share(index),
        "kek_file": keys.keks[index - 1],
        "public_file": keys.directory / "public.json",
    }
    values.update(overrides)
    return KmsSettings.load(None, **values)


@dataclass
class Running:
    node: KmsNode
    server: RpcServer
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class KmsNet:
    chain: Chain
    keys: KeyFiles
    running: list[Running] = field(default_factory=list)
    public_handles: set[bytes] = field(default_factory=set)
    channels: list[Any] = field(default_factory=list)

    @property
    def actors(self) -> Actors:
        return self.chain.actors

    def stub(self, node: int) -> kms_pb2_grpc.KmsServiceStub:
        """A client of node `node` (0-based); its channel is closed at teardown."""
        channel = create_channel(self.running[node].server.target)
        self.channels.append(channel)
        return kms_pb2_grpc.KmsServiceStub(channel)

    async def start(self, index: int, *, enclave: Any = None, **overrides: Any) -> Running:
        """Serve node `index` (1-based) with `serve()` and wait until it answers health."""
        listening: list[tuple[KmsNode, RpcServer]] = []
        stop, started = asyncio.Event(), asyncio.Event()

        def on_listening(node: KmsNode, server: RpcServer) -> None:
            listening.append((node, server))
            started.set()

        task = asyncio.create_task(
            serve(
                node_settings(self.chain, self.keys, index, **overrides),
                directory=self.chain.view,
                is_publicly_decryptable=self.public_handles.__contains__,
                enclave_key=enclave or self.actors.kms[index - 1],
                stop=stop,
                signals=(),
                on_listening=on_listening,
                clock=self.actors.now,
            )
        )
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not listening:
            task.result()  # raises the start-up error
        node, server = listening[0]
        async with create_channel(server.target) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=10
            )
        return Running(node, server, stop, task)

    async def stop(self, running: Running) -> None:
        running.stop.set()
        await running.task


@pytest.fixture
async def kms(chain: Chain, keys: KeyFiles) -> AsyncIterator[KmsNet]:
    chain.actors.clock[0] = chain.net.backend.now()
    network = KmsNet(chain, keys)
    try:
        for index in (1, 2, 3):
            network.running.append(await network.start(index))
        yield network
    finally:
        for channel in network.channels:
            await channel.close(None)
        for running in network.running:
            if not running.task.done():
                await network.stop(running)
