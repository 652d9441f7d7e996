"""One contract suite, run against the embedded EVM and against anvil (oasis-style
conformance: the same tests on every backend)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contracts_support import Net, make_net

from attestation.providers.simulated import SimulatedTdx
from nox.chain.anvil import AnvilProcess
from nox.chain.backend import ChainBackend, EmbeddedChain


@pytest.fixture(scope="session")
def sim_tdx() -> SimulatedTdx:
    return SimulatedTdx.generate()


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as proc:
        yield proc


# anvil is a real JSON-RPC process: its cases are integration tests (-m "not integration" skips
# them and starts no anvil); the embedded EVM runs in process.
@pytest.fixture(
    scope="module", params=["embedded", pytest.param("anvil", marks=pytest.mark.integration)]
)
def backend(request: pytest.FixtureRequest) -> ChainBackend:
    if request.param == "embedded":
        return EmbeddedChain()
    proc: AnvilProcess = request.getfixturevalue("anvil")
    return proc.backend()


@pytest.fixture
def net(backend: ChainBackend, sim_tdx: SimulatedTdx) -> Net:
    return make_net(backend, sim_tdx)
