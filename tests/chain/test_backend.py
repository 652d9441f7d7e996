"""Embedded backend specifics: a chain id that fits the handle, artifacts, revert decoding."""

from __future__ import annotations

import pytest
from contracts_support import Net

from nox.chain.artifacts import load_artifact
from nox.chain.backend import DEV_CHAIN_ID, EmbeddedChain
from nox.chain.exceptions import ArtifactNotFound, ContractReverted


def test_embedded_chain_id_is_31337_in_rpc_and_in_the_evm(net: Net) -> None:
    assert net.backend.chain_id == DEV_CHAIN_ID == 31337
    assert net.backend.w3.eth.chain_id == 31337
    receipt = net.backend.transact(net.compute.fn.plaintextToEncrypted(bytes(32), 35))
    (op,) = net.compute.operations(receipt)
    assert op.outputs[0][26:30] == (31337).to_bytes(4, "big")  # block.chainid inside the EVM


def test_chain_ids_that_do_not_fit_a_handle_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        EmbeddedChain(chain_id=2**32)


def test_artifacts_carry_the_pinned_compiler() -> None:
    artifact = load_artifact("NoxRegistry")
    assert artifact.compiler_version.startswith("0.8.30+commit.73712a01")
    assert artifact.deployed_bytecode
    with pytest.raises(ArtifactNotFound):
        load_artifact("NoSuchContract")


def test_time_travel_and_decoded_custom_errors(net: Net) -> None:
    before = net.backend.now()
    net.backend.advance_time(1000)
    assert net.backend.now() >= before + 1000
    with pytest.raises(ContractReverted) as info:
        net.registry.set_max_attestation_age(0, net.owner)
    assert info.value.error_name == "InvalidMaxAttestationAge"
    assert info.value.error_args == {"value": 0}
    assert info.value.reason == "CONTRACT_REVERTED"
