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


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def backend(request: pytest.FixtureRequest) -> ChainBackend:
    if request.param == "embedded":
        return EmbeddedChain()
    proc: AnvilProcess = request.getfixturevalue("anvil")
    return proc.backend()


@pytest.fixture
def net(backend: ChainBackend, sim_tdx: SimulatedTdx) -> Net:
    return make_net(backend, sim_tdx)
