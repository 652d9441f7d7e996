"""The hand-rolled envelope digest equals eth_account's generic EIP-712 encoder (differential)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.messages import _hash_eip191_message, encode_typed_data, hash_domain
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nox.crypto.eip712 import Domain, envelope_digest
from nox.crypto.hashing import keccak256
from nox.errors import InvalidArgument

TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Envelope": [
        {"name": "payloadHash", "type": "bytes32"},
        {"name": "payloadType", "type": "string"},
        {"name": "audience", "type": "address"},
        {"name": "issuedAt", "type": "uint64"},
        {"name": "expiresAt", "type": "uint64"},
        {"name": "nonce", "type": "bytes32"},
    ],
}

addresses = st.binary(min_size=20, max_size=20)
words = st.binary(min_size=32, max_size=32)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
chain_ids = st.one_of(
    st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=2**256 - 1)
)
type_names = st.one_of(
    st.sampled_from(["nox.v1.GetOperandsPayload", "nox.v1.TaskAssignment", ""]),
    st.text(max_size=60),
)


def reference_digest(
    chain_id: int,
    contract: bytes,
    payload: bytes,
    payload_type: str,
    audience: bytes,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
) -> bytes:
    typed: dict[str, Any] = {
        "types": TYPES,
        "primaryType": "Envelope",
        "domain": {
            "name": "Nox",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x" + contract.hex(),
        },
        "message": {
            "payloadHash": keccak256(payload),
            "payloadType": payload_type,
            "audience": "0x" + audience.hex(),
            "issuedAt": issued_at,
            "expiresAt": expires_at,
            "nonce": nonce,
        },
    }
    return bytes(_hash_eip191_message(encode_typed_data(full_message=typed)))


@settings(max_examples=150, deadline=None)
@given(
    chain_id=chain_ids,
    contract=addresses,
    payload=st.binary(max_size=2000),
    payload_type=type_names,
    audience=addresses,
    issued_at=u64,
    expires_at=u64,
    nonce=words,
)
@example(
    chain_id=0,
    contract=bytes(20),
    payload=b"",
    payload_type="",
    audience=bytes(20),
    issued_at=0,
    expires_at=0,
    nonce=bytes(32),
)
@example(
    chain_id=2**256 - 1,
    contract=b"\xff" * 20,
    payload=b"\xff",
    payload_type="é∑😀",
    audience=b"\xff" * 20,
    issued_at=2**64 - 1,
    expires_at=2**64 - 1,
    nonce=b"\xff" * 32,
)
def test_digest_matches_eth_account(
    chain_id: int,
    contract: bytes,
    payload: bytes,
    payload_type: str,
    audience: bytes,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
) -> None:
    domain = Domain(chain_id=chain_id, verifying_contract=contract)
    ours = envelope_digest(
        domain, keccak256(payload), payload_type, audience, issued_at, expires_at, nonce
    )
    assert ours == reference_digest(
        chain_id, contract, payload, payload_type, audience, issued_at, expires_at, nonce
    )


@settings(max_examples=50)
@given(chain_id=chain_ids, contract=addresses)
def test_domain_separator_matches_eth_account(chain_id: int, contract: bytes) -> None:
    domain = Domain(chain_id=chain_id, verifying_contract=contract)
    reference = hash_domain(
        {
            "name": "Nox",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x" + contract.hex(),
        }
    )
    assert domain.separator == bytes(reference)


def test_domain_rejects_bad_fields() -> None:
    with pytest.raises(InvalidArgument):
        Domain(chain_id=1, verifying_contract=bytes(19))
    with pytest.raises(InvalidArgument):
        Domain(chain_id=-1, verifying_contract=bytes(20))
    with pytest.raises(InvalidArgument):
        Domain(chain_id=2**256, verifying_contract=bytes(20))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload_hash", bytes(31)),
        ("audience", bytes(21)),
        ("nonce", bytes(33)),
        ("issued_at", 2**64),
        ("expires_at", -1),
    ],
)
def test_digest_rejects_bad_fields(field: str, value: object) -> None:
    args: dict[str, Any] = {
        "payload_hash": bytes(32),
        "payload_type": "t",
        "audience": bytes(20),
        "issued_at": 0,
        "expires_at": 0,
        "nonce": bytes(32),
    }
    args[field] = value
    with pytest.raises(InvalidArgument):
        envelope_digest(Domain(1, bytes(20)), **args)
