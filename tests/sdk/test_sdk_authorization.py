"""The SDK's DecryptionAuthorization: digest equal to eth_account's EIP-712 encoder's, and
accepted by the check every gateway and KMS node runs."""

from __future__ import annotations

import os

from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, checksum
from nox.kms.authorization import verify_authorization
from nox.sdk.authorization import (
    AccountSigner,
    authorization_digest,
    authorization_typed_data,
    build_authorization,
)

# One RSA key for the whole module: generating one per example would dominate the run.
RSA = RequesterKey.generate_rsa()
SECP = RequesterKey.generate_secp256k1()


def _independent_typed_data(
    domain: Domain,
    user: bytes,
    kind: int,
    public_key: bytes,
    handles: list[bytes],
    not_before: int,
    expires_at: int,
) -> dict[str, object]:
    """The typed data written out from decryption.proto's comment, not from the SDK."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "DecryptionAuthorization": [
                {"name": "user", "type": "address"},
                {"name": "keyKind", "type": "uint8"},
                {"name": "publicKey", "type": "bytes"},
                {"name": "handles", "type": "bytes32[]"},
                {"name": "notBefore", "type": "uint64"},
                {"name": "expiresAt", "type": "uint64"},
            ],
        },
        "primaryType": "DecryptionAuthorization",
        "domain": {
            "name": "Nox",
            "version": "1",
            "chainId": domain.chain_id,
            "verifyingContract": checksum(domain.verifying_contract),
        },
        "message": {
            "user": checksum(user),
            "keyKind": kind,
            "publicKey": public_key,
            "handles": handles,
            "notBefore": not_before,
            "expiresAt": expires_at,
        },
    }


@settings(max_examples=60, deadline=None)
@given(
    chain_id=st.integers(1, 2**32 - 1),
    registry=st.binary(min_size=20, max_size=20),
    handles=st.lists(st.binary(min_size=32, max_size=32), max_size=5),
    not_before=st.integers(0, 2**64 - 3601),
    window=st.integers(0, 3600),
    rsa=st.booleans(),
)
def test_digest_equals_eth_account_encoder(
    chain_id: int,
    registry: bytes,
    handles: list[bytes],
    not_before: int,
    window: int,
    rsa: bool,
) -> None:
    domain = Domain(chain_id=chain_id, verifying_contract=registry)
    user = EnclaveKey.generate()
    requester = RSA if rsa else SECP
    auth = build_authorization(
        user,
        domain=domain,
        requester=requester.public,
        handles=handles,
        not_before=not_before,
        expires_at=not_before + window,
    )
    digest = authorization_digest(domain, auth)
    typed = _independent_typed_data(
        domain,
        user.address,
        int(requester.public.kind),
        requester.public.data,
        handles,
        not_before,
        not_before + window,
    )
    signable = encode_typed_data(full_message=typed)
    reference = b"\x19" + signable.version + signable.header + signable.body
    assert digest == keccak256(reference)
    # The wallet JSON the SDK offers encodes to the same digest.
    mine = encode_typed_data(full_message=authorization_typed_data(domain, auth))
    assert keccak256(b"\x19" + mine.version + mine.header + mine.body) == digest
    # The signature is the user's, as eth_account recovers it.
    assert Account.recover_message(signable, signature=auth.signature) == checksum(user.address)


def test_gateway_and_kms_check_accepts_it_and_eth_account_signer_agrees() -> None:
    domain = Domain(chain_id=31337, verifying_contract=os.urandom(20))
    handles = [os.urandom(32) for _ in range(3)]
    account = Account.create()
    signer = AccountSigner(account)
    key = EnclaveKey.from_bytes(bytes(account.key))
    made = [
        build_authorization(
            s,
            domain=domain,
            requester=SECP.public,
            handles=handles,
            not_before=1_000,
            expires_at=4_600,
        )
        for s in (signer, key)
    ]
    # RFC 6979 on both sides: the eth_account signer and the enclave key sign identically.
    assert made[0].signature == made[1].signature
    user = verify_authorization(made[0], domain=domain, now=2_000, handles=handles[:2])
    assert user == key.address
