"""Handle bindings (`nox.crypto.binding`): digest layout, Merkle proofs, the verifier."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given
from hypothesis import strategies as st

from nox.crypto.binding import (
    ROLE_GATEWAY,
    ROLE_RUNNER,
    Binding,
    BindingVerifier,
    BoundRow,
    bindings_digest,
    leaf_hash,
    merkle_proofs,
    merkle_root,
    prove_key,
    root_from_proof,
    sign_bindings,
    verify_key_proof,
)
from nox.crypto.eip712 import Domain
from nox.crypto.exceptions import BindingInvalid, BindingMissing
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.errors import PermissionDenied

DOMAIN = Domain(chain_id=31337, verifying_contract=bytes.fromhex("11" * 20))
TASK = keccak256(b"task")


class Directory:
    """address -> role, with a revoked set; `require_producer` as RegistryView answers it."""

    def __init__(self) -> None:
        self.roles: dict[bytes, int] = {}
        self.revoked: set[bytes] = set()
        self.calls = 0

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        del now
        self.calls += 1
        if address not in self.roles:
            raise PermissionDenied("not registered", reason="SIGNER_NOT_REGISTERED")
        if self.roles[address] != role:
            raise PermissionDenied("other role", reason="ROLE_MISMATCH")
        if address in self.revoked:
            raise PermissionDenied("revoked", reason="REVOKED")


def _row(i: int = 0) -> BoundRow:
    """A row with a real K = k·G and the producer's proof that it made K."""
    handle, k = os.urandom(32), EnclaveKey.generate()
    return BoundRow(
        handle=handle,
        ephemeral_public_key=k.public_key,
        nonce=os.urandom(12),
        ciphertext=os.urandom(24 + i),
        value_tag=os.urandom(32),
        salt=os.urandom(32),
        key_proof=prove_key(DOMAIN, handle, k.secret_bytes()),
    )


def _setup(role: int = ROLE_RUNNER) -> tuple[EnclaveKey, Directory, BindingVerifier]:
    key, directory = EnclaveKey.generate(), Directory()
    directory.roles[key.address] = role
    return key, directory, BindingVerifier(DOMAIN, directory)


def test_digest_matches_eth_accounts_eip712_encoder() -> None:
    root = os.urandom(32)
    typed: dict[str, Any] = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "HandleBindings": [
                {"name": "taskId", "type": "bytes32"},
                {"name": "root", "type": "bytes32"},
            ],
        },
        "primaryType": "HandleBindings",
        "domain": {
            "name": "Nox",
            "version": "1",
            "chainId": DOMAIN.chain_id,
            "verifyingContract": "0x" + DOMAIN.verifying_contract.hex(),
        },
        "message": {"taskId": TASK, "root": root},
    }
    expected = bytes(_hash_eip191_message(encode_typed_data(full_message=typed)))
    assert bindings_digest(DOMAIN, TASK, root) == expected


def test_leaf_is_the_eip712_struct_hash_of_handle_binding() -> None:
    row = _row()
    type_hash = keccak256(
        b"HandleBinding(bytes32 handle,bytes ephemeralPublicKey,bytes32 ciphertextHash,"
        b"bytes32 tagCommitment)"
    )
    expected = keccak256(
        type_hash,
        row.handle,
        keccak256(row.ephemeral_public_key),
        keccak256(row.nonce + row.ciphertext),
        keccak256(row.salt + row.value_tag),
    )
    assert row.leaf() == expected
    assert leaf_hash(row.handle, row.ephemeral_public_key, os.urandom(32), os.urandom(32)) != (
        expected
    )


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40, unique=True))
def test_every_proof_leads_to_the_root(leaves: list[bytes]) -> None:
    root = merkle_root(leaves)
    proofs = merkle_proofs(leaves)
    assert all(root_from_proof(leaf, p) == root for leaf, p in zip(leaves, proofs, strict=True))
    assert max(len(p) for p in proofs) <= max(1, (len(leaves) - 1).bit_length())
    if len(leaves) == 1:
        assert root == leaves[0]
        assert proofs == [()]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_round_trip_one_signature_for_a_task(count: int) -> None:
    key, directory, verifier = _setup()
    rows = [_row(i) for i in range(count)]
    bindings = sign_bindings(key, DOMAIN, TASK, rows)
    assert len({b.signature for b in bindings}) == 1
    targets = [(r.handle, r.ephemeral_public_key, b) for r, b in zip(rows, bindings, strict=True)]
    assert verifier.verify(targets, now=0) == [key.address] * count
    assert verifier.recoveries == 1  # one signature shared by all outputs: one ecrecover
    assert directory.calls == 1
    verifier.verify(targets, now=0)
    assert verifier.recoveries == 1  # the LRU: no recovery the second time
    assert directory.calls == 2  # but the registry is asked on every check


def test_an_input_is_bound_by_a_gateway() -> None:
    key, _, verifier = _setup(ROLE_GATEWAY)
    row = _row()
    (binding,) = sign_bindings(key, DOMAIN, b"", [row])
    assert binding.proof == ()
    assert verifier.verify([(row.handle, row.ephemeral_public_key, binding)], now=0) == [
        key.address
    ]
    # the same key claiming a task's output: a gateway is not a runner
    (as_output,) = sign_bindings(key, DOMAIN, TASK, [row])
    with pytest.raises(BindingInvalid) as info:
        verifier.verify([(row.handle, row.ephemeral_public_key, as_output)], now=0)
    assert info.value.metadata["why"] == "ROLE_MISMATCH"


ALTERATIONS = {
    "handle": lambda row, b: (os.urandom(32), row.ephemeral_public_key, b),
    "K": lambda row, b: (row.handle, b"\x02" + os.urandom(32), b),
    "ciphertext hash": lambda row, b: (
        row.handle,
        row.ephemeral_public_key,
        dataclasses.replace(b, ciphertext_hash=os.urandom(32)),
    ),
    "tag commitment": lambda row, b: (
        row.handle,
        row.ephemeral_public_key,
        dataclasses.replace(b, tag_commitment=os.urandom(32)),
    ),
    "task id": lambda row, b: (
        row.handle,
        row.ephemeral_public_key,
        dataclasses.replace(b, task_id=os.urandom(32)),
    ),
    "proof": lambda row, b: (
        row.handle,
        row.ephemeral_public_key,
        dataclasses.replace(b, proof=(os.urandom(32), *b.proof[1:])),
    ),
    "signature": lambda row, b: (
        row.handle,
        row.ephemeral_public_key,
        dataclasses.replace(b, signature=EnclaveKey.generate().sign_digest(os.urandom(32))),
    ),
}


@pytest.mark.parametrize("field", list(ALTERATIONS))
def test_each_altered_field_is_refused(field: str) -> None:
    key, _, verifier = _setup()
    rows = [_row(i) for i in range(3)]
    bindings = sign_bindings(key, DOMAIN, TASK, rows)
    target = ALTERATIONS[field](rows[0], bindings[0])
    with pytest.raises(BindingInvalid) as info:
        verifier.verify([target], now=0)
    assert info.value.metadata["handle"] == "0x" + target[0].hex()
    assert info.value.metadata["why"] == "SIGNER_NOT_REGISTERED"


@pytest.mark.parametrize(
    "binding",
    [
        Binding(bytes(31), bytes(32), b"", (), bytes(65)),
        Binding(bytes(32), bytes(32), bytes(32), (), bytes(65)),  # zero task id
        Binding(bytes(32), bytes(32), b"", (bytes(31),), bytes(65)),
        Binding(bytes(32), bytes(32), b"", (bytes(32),) * 33, bytes(65)),
        Binding(bytes(32), bytes(32), b"", (), bytes(64)),
        Binding(bytes(32), bytes(32), b"", (), bytes(65)),  # v = 0: not a signature
    ],
)
def test_malformed_bindings_are_invalid(binding: Binding) -> None:
    _, _, verifier = _setup()
    with pytest.raises(BindingInvalid):
        verifier.verify([(os.urandom(32), b"\x02" + os.urandom(32), binding)], now=0)


def test_a_missing_binding_is_refused() -> None:
    _, _, verifier = _setup()
    handle = os.urandom(32)
    with pytest.raises(BindingMissing) as info:
        verifier.verify([(handle, b"\x02" + os.urandom(32), None)], now=0)
    assert info.value.metadata["handle"] == "0x" + handle.hex()


def test_a_revoked_producer_is_refused_even_when_cached() -> None:
    key, directory, verifier = _setup()
    row = _row()
    (binding,) = sign_bindings(key, DOMAIN, TASK, [row])
    target = (row.handle, row.ephemeral_public_key, binding)
    verifier.verify([target], now=0)
    directory.revoked.add(key.address)
    with pytest.raises(BindingInvalid) as info:
        verifier.verify([target], now=0)
    assert info.value.metadata["why"] == "REVOKED"


def test_a_key_proof_shows_the_producer_made_k_for_this_handle_only() -> None:
    row = _row()
    assert verify_key_proof(DOMAIN, row.handle, row.ephemeral_public_key, row.key_proof)
    other = _row()
    another_domain = Domain(chain_id=1, verifying_contract=DOMAIN.verifying_contract)
    assert not verify_key_proof(DOMAIN, other.handle, row.ephemeral_public_key, row.key_proof)
    assert not verify_key_proof(DOMAIN, row.handle, other.ephemeral_public_key, row.key_proof)
    assert not verify_key_proof(another_domain, row.handle, row.ephemeral_public_key, row.key_proof)
    bad_z = row.key_proof[:33] + bytes(32)
    assert not verify_key_proof(DOMAIN, row.handle, row.ephemeral_public_key, bad_z)
    assert not verify_key_proof(DOMAIN, row.handle, row.ephemeral_public_key, row.key_proof[:64])
    assert not verify_key_proof(DOMAIN, row.handle, row.ephemeral_public_key, bytes(65))


@pytest.mark.parametrize("proof", ["missing", "another handle's"])
def test_an_output_without_its_key_proof_is_refused(proof: str) -> None:
    """A runner that binds a K it did not make (another handle's) cannot prove it made K."""
    key, _, verifier = _setup()
    victim, row = _row(), _row()
    stolen = dataclasses.replace(
        row,
        ephemeral_public_key=victim.ephemeral_public_key,
        key_proof=b"" if proof == "missing" else victim.key_proof,
    )
    (binding,) = sign_bindings(key, DOMAIN, TASK, [stolen])
    with pytest.raises(BindingInvalid) as info:
        verifier.verify([(stolen.handle, stolen.ephemeral_public_key, binding)], now=0)
    assert info.value.metadata["why"] == "KEY_PROOF_INVALID"
    # an input (the gateway's) carries no key proof and needs none
    gateway, _, by_gateway = _setup(ROLE_GATEWAY)
    (as_input,) = sign_bindings(gateway, DOMAIN, b"", [stolen])
    by_gateway.verify([(stolen.handle, stolen.ephemeral_public_key, as_input)], now=0)
