"""The user's side of a decryption: the EIP-712 `DecryptionAuthorization` (decryption.proto).

    DecryptionAuthorization(address user,uint8 keyKind,bytes publicKey,bytes32[] handles,
                            uint64 notBefore,uint64 expiresAt)
    domain {name "Nox", version "1", chainId, verifyingContract NoxRegistry}

The digest is the one every gateway and KMS node checks (`nox.kms.authorization`), so the
client and the verifiers cannot drift apart; a test checks it against eth_account's generic
EIP-712 encoder. `authorization_typed_data` gives the same struct as the JSON a browser
wallet signs with `eth_signTypedData_v4`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from eth_typing import Hash32

from nox.crypto.delegation import RequesterPublicKey
from nox.crypto.eip712 import DOMAIN_NAME, DOMAIN_VERSION, Domain
from nox.crypto.keys import checksum
from nox.kms.authorization import MAX_WINDOW, AuthorizationWindowInvalid, authorization_digest
from nox.kms.wire import requester_key_to_proto
from nox.v1.decryption_pb2 import DecryptionAuthorization

__all__ = [
    "MAX_WINDOW",
    "AccountSigner",
    "UserSigner",
    "authorization_digest",
    "authorization_typed_data",
    "build_authorization",
]


class UserSigner(Protocol):
    """Whoever signs for the user: an address and a raw-digest signer (65 bytes, v 27/28).

    `nox.crypto.keys.EnclaveKey` is one; `AccountSigner` wraps an eth_account account.
    """

    @property
    def address(self) -> bytes:
        """The user's 20-byte address."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """A 65-byte r ‖ s ‖ v signature of the 32-byte digest."""
        ...


class AccountSigner:
    """A `UserSigner` over an eth_account `LocalAccount` (e.g. `Account.from_key(...)`)."""

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    def __repr__(self) -> str:
        return f"AccountSigner({self._account.address})"

    @property
    def address(self) -> bytes:
        return bytes.fromhex(self._account.address[2:])

    def sign_digest(self, digest: bytes) -> bytes:
        signed = self._account.unsafe_sign_hash(Hash32(digest))
        return bytes(signed.signature)


def build_authorization(
    user: UserSigner,
    *,
    domain: Domain,
    requester: RequesterPublicKey,
    handles: Sequence[bytes],
    not_before: int,
    expires_at: int,
) -> DecryptionAuthorization:
    """A signed authorization for `handles` (empty: every handle the user may view).

    The window `expires_at - not_before` must be within [0, 3600] seconds.
    """
    if not 0 <= expires_at - not_before <= MAX_WINDOW:
        raise AuthorizationWindowInvalid(
            f"authorization window must be within [0, {MAX_WINDOW}] seconds"
        )
    auth = DecryptionAuthorization(
        chain_id=domain.chain_id,
        user_address=user.address,
        requester_key=requester_key_to_proto(requester),
        handles=[bytes(h) for h in handles],
        not_before=not_before,
        expires_at=expires_at,
    )
    auth.signature = user.sign_digest(authorization_digest(domain, auth))
    return auth


def authorization_typed_data(domain: Domain, auth: DecryptionAuthorization) -> dict[str, Any]:
    """The EIP-712 typed data of `auth` as wallets take it (`eth_signTypedData_v4`)."""
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
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": checksum(domain.verifying_contract),
        },
        "message": {
            "user": checksum(auth.user_address),
            "keyKind": int(auth.requester_key.kind),
            "publicKey": "0x" + auth.requester_key.public_key.hex(),
            "handles": ["0x" + h.hex() for h in auth.handles],
            "notBefore": auth.not_before,
            "expiresAt": auth.expires_at,
        },
    }
