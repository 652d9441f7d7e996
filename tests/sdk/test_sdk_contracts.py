"""The SDK's contract helpers on the embedded EVM: the gateway (registered on-chain through a
simulated TDX quote) encrypts an amount through NoxClient, and the sample ConfidentialToken
accepts the proof through NoxCompute.validateInputProof."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from sdk_support import Net, running_network

from attestation.binding import ext_data, report_data_for
from attestation.measurements import Measurements
from attestation.providers.simulated import DEFAULT_MR_TD, SimulatedTdx
from nox.chain.artifacts import load_artifact
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.chain.deploy import Deployment, deploy_all
from nox.chain.exceptions import ContractReverted
from nox.crypto.keys import EnclaveKey
from nox.sdk.client import NoxClient
from nox.sdk.contracts import ConfidentialTokenClient, encrypt_for_contract
from nox.sdk.exceptions import ResultTimeout

pytestmark = pytest.mark.integration

GATEWAY_ROLE, MINT, TRANSFER, EUINT256 = 3, 17, 16, 35
MEASUREMENTS = Measurements(mr_td=DEFAULT_MR_TD)


@dataclass
class Chain:
    backend: EmbeddedChain
    deployment: Deployment
    gateway_key: EnclaveKey


@pytest.fixture(scope="module")
def chain() -> Chain:
    backend = EmbeddedChain()
    deployment = deploy_all(backend, with_token=True)
    registry = RegistryClient(backend, deployment.registry)
    registry.allow_workload(GATEWAY_ROLE, MEASUREMENTS.workload_id, backend.deployer)
    enclave = Account.create()
    backend.fund(enclave.address)
    operator = backend.accounts[1]
    endpoint = "https://gateway.example:50051"
    ext = ext_data(
        GATEWAY_ROLE,
        to_bytes20(operator.address),
        backend.chain_id,
        to_bytes20(deployment.registry),
        endpoint,
    )
    quote = SimulatedTdx.generate().quote(
        report_data_for(to_bytes20(enclave.address), ext), measurements=MEASUREMENTS
    )
    registry.register(quote, GATEWAY_ROLE, operator.address, endpoint, enclave)
    return Chain(backend, deployment, EnclaveKey.from_bytes(bytes(enclave.key)))


@pytest.fixture
async def net(chain: Chain, tmp_path: Path) -> AsyncIterator[Net]:
    async with running_network(
        tmp_path,
        gateway_key=chain.gateway_key,
        registry_address=to_bytes20(chain.deployment.registry),
        compute_address=to_bytes20(chain.deployment.compute),
    ) as network:
        yield network


async def test_token_accepts_amounts_encrypted_through_the_sdk(chain: Chain, net: Net) -> None:
    backend, token_address = chain.backend, chain.deployment.token
    assert token_address is not None
    owner, alice, bob = backend.deployer, backend.accounts[2], backend.accounts[3]
    async with NoxClient(
        net.gateway_target, directory=net.registry, kms_public=net.dealing.public
    ) as nox:
        as_owner = ConfidentialTokenClient(nox, backend, token_address, owner)
        minted = await as_owner.mint(alice.address, 1_000)
        (mint,) = [op for op in minted.operations if op.operator == MINT]
        assert mint.inputs[0] == minted.amount.handle
        assert await as_owner.balance_handle(alice.address) == mint.outputs[0]
        assert set(minted.output_handles) >= set(mint.outputs)

        as_alice = ConfidentialTokenClient(nox, backend, token_address, alice)
        moved = await as_alice.transfer(bob.address, 400)
        (transfer,) = [op for op in moved.operations if op.operator == TRANSFER]
        assert transfer.inputs[:2] == [moved.amount.handle, mint.outputs[0]]
        assert await as_alice.balance_handle() == transfer.outputs[0]

        # No runner computes results here: the balance is not stored, so reading it times out.
        with pytest.raises(ResultTimeout):
            await as_alice.balance(EnclaveKey.from_bytes(bytes(alice.key)), timeout=0)
        stranger = ConfidentialTokenClient(nox, backend, token_address, Account.create())
        assert await stranger.balance(EnclaveKey.generate()) == 0


async def test_a_proof_for_another_contract_is_rejected_on_chain(chain: Chain, net: Net) -> None:
    backend, token_address = chain.backend, chain.deployment.token
    assert token_address is not None
    owner = backend.deployer
    token = backend.contract(load_artifact("ConfidentialToken"), token_address)
    async with NoxClient(net.gateway_target, directory=net.registry) as nox:
        elsewhere = await encrypt_for_contract(
            nox, 5, EUINT256, sender=owner.address, contract=os.urandom(20)
        )
        call = token.functions.mint(owner.address, elsewhere.handle, elsewhere.proof)
        with pytest.raises(ContractReverted) as info:
            backend.transact(call, owner)
        assert info.value.error_name == "ProofAppMismatch"
