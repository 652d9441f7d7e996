"""A user's `DecryptionAuthorization` (nox/v1/decryption.proto): EIP-712 digest and checks.

    DecryptionAuthorization(address user,uint8 keyKind,bytes publicKey,bytes32[] handles,
                            uint64 notBefore,uint64 expiresAt)

under the envelope domain {name "Nox", version "1", chainId, verifyingContract NoxRegistry}.
Hand-rolled over the fixed layout with precomputed type hash, as the envelope digest is
(DESIGN §4: eth_account's generic encoder costs ~0.3 ms a message); a test checks it
against eth_account's encoder. Only EOA signatures (ecrecover) are accepted here: ERC-1271
smart accounts need a chain call and are refused (a KMS node does not read the chain).
"""

from __future__ import annotations

from collections.abc import Sequence

from nox.crypto.eip712 import Domain
from nox.crypto.exceptions import BadSignature, SignatureMalformed
from nox.crypto.hashing import keccak256
from nox.crypto.keys import recover_address
from nox.errors import InvalidArgument, PermissionDenied, Unauthenticated
from nox.v1.decryption_pb2 import DecryptionAuthorization

AUTHORIZATION_TYPE = (
    "DecryptionAuthorization(address user,uint8 keyKind,bytes publicKey,bytes32[] handles,"
    "uint64 notBefore,uint64 expiresAt)"
)
AUTHORIZATION_TYPEHASH = keccak256(AUTHORIZATION_TYPE.encode())
MAX_WINDOW = 3600


class AuthorizationInvalid(Unauthenticated):
    """A decryption authorization not signed by its user (or by a smart account)."""

    reason = "AUTHORIZATION_INVALID"


class AuthorizationExpired(Unauthenticated):
    """A decryption authorization used outside its not_before..expires_at window."""

    reason = "AUTHORIZATION_EXPIRED"


class AuthorizationWindowInvalid(InvalidArgument):
    """A decryption authorization whose window is negative or longer than an hour."""

    reason = "AUTHORIZATION_WINDOW_INVALID"


class HandleNotAuthorized(PermissionDenied):
    """A handle the user's authorization does not list."""

    reason = "HANDLE_NOT_AUTHORIZED"


def authorization_digest(domain: Domain, auth: DecryptionAuthorization) -> bytes:
    """The 32-byte EIP-712 digest the user signs."""
    if len(auth.user_address) != 20 or any(len(h) != 32 for h in auth.handles):
        raise InvalidArgument("user address must be 20 bytes and handles 32 bytes")
    if not 0 <= auth.requester_key.kind < 256:
        raise InvalidArgument("key kind must fit uint8")
    struct_hash = keccak256(
        AUTHORIZATION_TYPEHASH,
        bytes(12) + auth.user_address,
        auth.requester_key.kind.to_bytes(32, "big"),
        keccak256(auth.requester_key.public_key),
        keccak256(b"".join(auth.handles)),
        auth.not_before.to_bytes(32, "big"),
        auth.expires_at.to_bytes(32, "big"),
    )
    return keccak256(b"\x19\x01", domain.separator, struct_hash)


def verify_authorization(
    auth: DecryptionAuthorization,
    *,
    domain: Domain,
    now: int,
    handles: Sequence[bytes],
) -> bytes:
    """Check the window, the chain, the EOA signature and that it covers `handles`.

    Returns the user's address. Raises AuthorizationWindowInvalid, AuthorizationExpired,
    AuthorizationInvalid (wrong chain, wrong or malformed signature) or HandleNotAuthorized.
    """
    if auth.expires_at < auth.not_before or auth.expires_at - auth.not_before > MAX_WINDOW:
        raise AuthorizationWindowInvalid(f"window must be within [0, {MAX_WINDOW}] seconds")
    if not auth.not_before <= now < auth.expires_at:
        raise AuthorizationExpired("authorization is outside its validity window")
    if auth.chain_id != domain.chain_id:
        raise AuthorizationInvalid("authorization is for another chain")
    digest = authorization_digest(domain, auth)
    try:
        signer = recover_address(digest, auth.signature)
    except (SignatureMalformed, BadSignature):
        raise AuthorizationInvalid("authorization signature is malformed") from None
    if signer != auth.user_address:
        raise AuthorizationInvalid(
            "authorization is not signed by its user (smart-account signatures unsupported)"
        )
    if auth.handles:
        listed = set(auth.handles)
        for handle in handles:
            if handle not in listed:
                raise HandleNotAuthorized(
                    "handle not listed in the authorization", metadata={"handle": handle.hex()}
                )
    return signer
