"""What `NoxClient` returns and how it is configured: plain frozen dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nox.chain.exceptions import SignerNotRegistered
from nox.crypto.delegation import BadNode, RequesterKeyKind
from nox.crypto.eip712 import Domain
from nox.errors import InvalidArgument
from nox.handles import Handle, Plaintext, ValueType
from nox.rpc.client import ChannelSettings
from nox.v1 import common_pb2

__all__ = [
    "COMPUTE_DOMAIN_NAME",
    "ClientSettings",
    "Decryption",
    "EncryptedInput",
    "GatewayInfo",
    "HandleStatus",
    "PinnedNodes",
    "PublicValue",
]

COMPUTE_DOMAIN_NAME = "NoxCompute"


@dataclass(frozen=True)
class ClientSettings:
    """How the client talks to the network; every field has a safe default."""

    authorization_seconds: int = 300
    """Validity of each decryption authorization (capped by the gateway's maximum)."""
    clock_skew_seconds: int = 60
    """An authorization starts this long before now, for servers whose clock is behind."""
    poll_interval_seconds: float = 0.5
    """Pause between GetHandleStatus polls in `wait_for_result`."""
    requester_key_kind: RequesterKeyKind = RequesterKeyKind.SECP256K1
    """The ephemeral key KMS partials are sealed to (RSA-OAEP is the browser scheme)."""
    audit_all_partials: bool = True
    """Check every KMS answer (naming every bad node) rather than stopping at t valid ones."""
    channel: ChannelSettings = field(default_factory=ChannelSettings)
    """Message limits and TLS roots of the gRPC channels."""
    gateway_attested_tls: bool = False
    """Dial the gateway over RA-TLS (`nox.rpc.ratls`): refuse it, before sending anything,
    unless its certificate is bound to an active gateway enclave of `directory` in the
    deployment `domain` (both then required; open the client with `async with`)."""
    dangerous_skip_gateway_registry_check: bool = False
    """Seal inputs to the gateway's key without checking on NoxRegistry that it is an active
    gateway enclave (no `directory` given): anyone answering GetGatewayInfo then reads the
    inputs. For tests of a gateway without a registry only."""
    dangerous_unverified_kms_key: bool = False
    """Accept a KMS node's GetPublicKey answer (unsigned) without checking it against the
    registry (`kms_registry`). Only for a local test network: whoever answers the call
    chooses the key set every decryption is checked against."""

    def __post_init__(self) -> None:
        if not 0 < self.authorization_seconds <= 3600:
            raise InvalidArgument("authorization_seconds must be in 1..3600")
        if self.clock_skew_seconds < 0 or self.poll_interval_seconds <= 0:
            raise InvalidArgument("clock skew must be >= 0 and the poll interval positive")


@dataclass(frozen=True)
class GatewayInfo:
    """The gateway's identity, deployment and limits (GetGatewayInfo)."""

    address: bytes
    chain_id: int
    registry_address: bytes
    compute_address: bytes
    acl_address: bytes
    kms_public_key: bytes
    kms_epoch: int
    kms_threshold: int
    max_batch_handles: int
    max_authorization_seconds: int
    enclave_public_key: bytes = b""
    """33-byte compressed enclave key inputs are sealed to; its address is `address`."""

    @property
    def domain(self) -> Domain:
        """The signed-envelope and authorization domain {Nox, 1, chainId, NoxRegistry}."""
        return Domain(chain_id=self.chain_id, verifying_contract=self.registry_address)

    @property
    def compute_domain(self) -> Domain:
        """The NoxCompute domain of input and decryption proofs."""
        return Domain(
            chain_id=self.chain_id,
            verifying_contract=self.compute_address,
            name=COMPUTE_DOMAIN_NAME,
        )


@dataclass(frozen=True)
class EncryptedInput:
    """A stored input: pass `handle` and `proof` to the application contract."""

    handle: bytes
    proof: bytes
    created_at: int

    @property
    def value_type(self) -> ValueType:
        """The value's type (byte 30 of the handle)."""
        return Handle.from_bytes(self.handle).value_type


@dataclass(frozen=True, repr=False)
class Decryption:
    """Decrypted values by handle, and the KMS nodes whose answers were rejected."""

    values: dict[bytes, Plaintext]
    bad_nodes: tuple[BadNode, ...]

    def __repr__(self) -> str:
        return (
            f"Decryption(handles={len(self.values)}, bad_nodes={self.bad_nodes}, values=<redacted>)"
        )


@dataclass(frozen=True)
class PublicValue:
    """A publicly decryptable handle's value, with the proof a contract accepts."""

    handle: bytes
    value: Plaintext
    plaintext: bytes
    proof: bytes


@dataclass(frozen=True)
class HandleStatus:
    """Whether a handle is stored, and where its value came from."""

    handle: bytes
    stored: bool
    origin: str | None
    """"input", "task", or None when not stored."""
    task_id: bytes | None
    created_at: int | None


@dataclass(frozen=True)
class PinnedNodes:
    """A fixed directory for `NoxClient(directory=...)`: enclave addresses learnt out of band
    (a deployment file, the devnet's info), each with its role. It trusts whoever gave the
    addresses; a `nox.chain.registry.RegistryView` reads NoxRegistry itself (production)."""

    roles: Mapping[bytes, int]

    @classmethod
    def gateway(cls, address: bytes | str) -> PinnedNodes:
        """Only this gateway (20 bytes, or 0x-hex)."""
        raw = bytes.fromhex(address.removeprefix("0x")) if isinstance(address, str) else address
        if len(raw) != 20:
            raise InvalidArgument("a gateway address is 20 bytes")
        return cls({bytes(raw): common_pb2.ROLE_GATEWAY})

    def require(self, address: bytes, role: int, now: int) -> None:
        """Raise PermissionDenied (SIGNER_NOT_REGISTERED) unless `address` is pinned as `role`."""
        del now
        if self.roles.get(bytes(address)) != role:
            raise SignerNotRegistered("node is not pinned in this role")
