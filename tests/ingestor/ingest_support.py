"""A NoxCompute deployment on the embedded EVM with a harness app that emits Operation events."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from nox.chain.artifacts import load_artifact
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import ComputeClient, to_bytes20
from nox.chain.deploy import Deployment, deploy_all
from nox.crypto.keys import EnclaveKey
from nox.ingestor import CursorStore, Ingestor, IngestorSettings, Web3ChainSource
from nox.queue import QueueConnection

UINT256 = 35


@dataclass
class Chain:
    """The embedded chain, its contracts and the NoxHarness app."""

    backend: EmbeddedChain
    deployment: Deployment
    compute: ComputeClient
    harness: Any

    @property
    def compute_address(self) -> bytes:
        return to_bytes20(self.deployment.compute)

    @property
    def registry_address(self) -> bytes:
        return to_bytes20(self.deployment.registry)

    def encrypt(self, value: int, type_code: int = UINT256) -> tuple[bytes, Any]:
        """PlaintextToEncrypted through the harness; returns (handle, receipt)."""
        receipt = self.backend.transact(
            self.harness.functions.encrypt(value.to_bytes(32, "big", signed=value < 0), type_code)
        )
        [op] = self.compute.operations(receipt)
        return op.outputs[0], receipt

    def add(self, a: bytes, b: bytes) -> tuple[bytes, Any]:
        receipt = self.backend.transact(self.harness.functions.run(1, [a, b]))
        [op] = self.compute.operations(receipt)
        return op.outputs[0], receipt

    def snapshot(self) -> Any:
        return self.backend._tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self.backend._tester.revert_to_snapshot(snapshot)


def make_chain() -> Chain:
    """A fresh chain with its own chain id, so cursors of concurrent runs sharing one
    PostgreSQL database never meet (the contract addresses are the same on every chain)."""
    backend = EmbeddedChain(chain_id=1 + secrets.randbelow(2**32 - 2))
    deployment = deploy_all(backend)
    compute = ComputeClient(backend, deployment.compute)
    address = backend.deploy(load_artifact("NoxHarness"), deployment.compute)
    harness = backend.contract(load_artifact("NoxHarness"), address)
    return Chain(backend, deployment, compute, harness)


def make_ingestor(
    chain: Chain,
    conn: QueueConnection,
    store: CursorStore,
    key: EnclaveKey,
    authorize_peer: Any = None,
    **settings: Any,
) -> Ingestor:
    defaults: dict[str, Any] = {
        "chain_id": chain.backend.chain_id,
        "compute_address": chain.compute_address,
        "registry_address": chain.registry_address,
        "initial_block": 0,
        "confirmations": 0,
        "poll_interval": 0.05,
        "retry_delay": 0.05,
        "threaded_chain_calls": False,
    }
    defaults.update(settings)
    return Ingestor(
        settings=IngestorSettings(**defaults),
        key=key,
        source=Web3ChainSource(chain.backend.w3, chain.compute_address),
        cursor=store,
        conn=conn,
        authorize_peer=authorize_peer,
    )


async def drain(ingestor: Ingestor, limit: int = 100) -> None:
    """Step until the ingestor has nothing more to read."""
    for _ in range(limit):
        if not await ingestor.step():
            return
    raise AssertionError("ingestor never caught up")
