"""The EIP-712 digest of a signed envelope, with precomputed type and domain hashes (DESIGN §4).

    Envelope(bytes32 payloadHash,string payloadType,address audience,uint64 issuedAt,
             uint64 expiresAt,bytes32 nonce)
    domain {name: "Nox", version: "1", chainId, verifyingContract: NoxRegistry}

The struct has a fixed layout, so its encoding is hand-rolled: seven 32-byte words hashed
once, then `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`. eth_account's generic encoder
gives the same bytes (a Hypothesis differential test proves it) but costs ~0.3 ms a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from sha3 import keccak_256  # type: ignore[import-untyped]

from nox.crypto.hashing import keccak256
from nox.errors import InvalidArgument

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_TYPE",
    "DOMAIN_VERSION",
    "ENVELOPE_TYPE",
    "ENVELOPE_TYPEHASH",
    "Domain",
    "envelope_digest",
    "payload_type_hash",
]

DOMAIN_NAME = "Nox"
DOMAIN_VERSION = "1"
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
ENVELOPE_TYPE = (
    "Envelope(bytes32 payloadHash,string payloadType,address audience,uint64 issuedAt,"
    "uint64 expiresAt,bytes32 nonce)"
)
DOMAIN_TYPEHASH = keccak256(DOMAIN_TYPE.encode())
ENVELOPE_TYPEHASH = keccak256(ENVELOPE_TYPE.encode())
_U64_MAX = 2**64 - 1
_ZERO12 = bytes(12)
_ZERO24 = bytes(24)


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain of every envelope on one chain: {Nox, 1, chainId, NoxRegistry}."""

    chain_id: int
    verifying_contract: bytes
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 2**256:
            raise InvalidArgument("chain id must fit uint256")
        if len(self.verifying_contract) != 20:
            raise InvalidArgument("verifying contract must be a 20-byte address")
        object.__setattr__(self, "verifying_contract", bytes(self.verifying_contract))
        separator = keccak256(
            DOMAIN_TYPEHASH,
            keccak256(self.name.encode()),
            keccak256(self.version.encode()),
            self.chain_id.to_bytes(32, "big"),
            _ZERO12,
            self.verifying_contract,
        )
        object.__setattr__(self, "separator", separator)


@lru_cache(maxsize=1024)
def payload_type_hash(payload_type: str) -> bytes:
    """keccak256 of the payload type name (cached: services use a small fixed set of names)."""
    return keccak256(payload_type.encode())


def _digest(
    separator: bytes,
    payload_hash: bytes,
    type_hash: bytes,
    audience: bytes,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
) -> bytes:
    """The digest from already-validated fields (the verify hot path skips re-checking).

    Hashes with `keccak_256` directly and one `join` (not `keccak256(*parts)` and nine
    concatenations): it runs twice per signed RPC on each side, and that saves ~1.3 µs a
    digest.
    """
    struct_hash = keccak_256(
        b"".join(
            (
                ENVELOPE_TYPEHASH,
                payload_hash,
                type_hash,
                _ZERO12,
                audience,
                _ZERO24,
                issued_at.to_bytes(8, "big"),
                _ZERO24,
                expires_at.to_bytes(8, "big"),
                nonce,
            )
        )
    ).digest()
    return keccak_256(b"\x19\x01" + separator + struct_hash).digest()  # type: ignore[no-any-return]


def envelope_digest(
    domain: Domain,
    payload_hash: bytes,
    payload_type: str,
    audience: bytes,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
) -> bytes:
    """The 32-byte EIP-712 digest an envelope's signature covers."""
    if len(payload_hash) != 32:
        raise InvalidArgument("payload hash must be 32 bytes")
    if len(audience) != 20:
        raise InvalidArgument("audience must be a 20-byte address")
    if len(nonce) != 32:
        raise InvalidArgument("nonce must be 32 bytes")
    if not (0 <= issued_at <= _U64_MAX and 0 <= expires_at <= _U64_MAX):
        raise InvalidArgument("issued_at and expires_at must fit uint64")
    return _digest(
        domain.separator,
        bytes(payload_hash),
        payload_type_hash(payload_type),
        bytes(audience),
        issued_at,
        expires_at,
        bytes(nonce),
    )
