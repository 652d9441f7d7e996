"""Chain-layer tests reuse the contract tests' helpers (bound quotes, registered nodes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contracts"))

from contracts_support import Net, make_net

from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.backend import ChainBackend, EmbeddedChain


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


# anvil is a real JSON-RPC process: its cases are integration tests (-m "not integration" skips
# them and starts no anvil); the embedded EVM runs in process.
@pytest.fixture(
    scope="module", params=["embedded", pytest.param("anvil", marks=pytest.mark.integration)]
)
def chain(request: pytest.FixtureRequest) -> ChainBackend:
    if request.param == "embedded":
        return EmbeddedChain()
    proc: AnvilProcess = request.getfixturevalue("anvil")
    return proc.backend()


@pytest.fixture(scope="session")
def sim_tdx() -> SimulatedTdx:
    return SimulatedTdx.generate()


@pytest.fixture
def net(chain: ChainBackend, sim_tdx: SimulatedTdx) -> Net:
    return make_net(chain, sim_tdx)
