"""What every gateway method works with: identity, deployment, store, views, KMS, limits.

The chain-facing parts are small protocols so the gateway is coded against what it needs,
not against a concrete chain client:

- `NodeDirectory.require(address, role, now)` raises PermissionDenied unless `address` is an
  active, attested node of `role` (`nox.chain.registry.RegistryView` is one);
- `AclView.is_viewer(handle, account)` / `is_publicly_decryptable(handle)`
  (`nox.chain.contracts.AclClient` is one);
- `KmsClient` fans one Delegate batch out to the KMS nodes (`nox.gateway.kms.KmsFanout`).

Directory and ACL calls may block (web3, an in-process EVM that is not thread-safe): the
gateway runs them in worker threads behind one lock (`Serialized`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nox.crypto.binding import BindingVerifier
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import ReplayCache
from nox.crypto.tags import TagKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.errors import InvalidArgument, Unavailable
from nox.gateway.store import AsyncHandleStore
from nox.v1 import common_pb2, decryption_pb2, kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

if TYPE_CHECKING:
    from nox.attest.bootstrap import Attestation

ROLE_ORCHESTRATOR = common_pb2.ROLE_ORCHESTRATOR
ROLE_RUNNER = common_pb2.ROLE_RUNNER
ROLE_GATEWAY = common_pb2.ROLE_GATEWAY
ROLE_KMS = common_pb2.ROLE_KMS

COMPUTE_DOMAIN_NAME = "NoxCompute"


class NodeDirectory(Protocol):
    """Who is registered: raises PermissionDenied unless `address` is active in `role`."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise unless `address` is registered, attested and unexpired in `role` at `now`."""
        ...

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        """Like `require`, but an expired (never revoked) registration is accepted."""
        ...


class AclView(Protocol):
    """The on-chain ACL, as far as the gateway reads it."""

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        """ACL.isViewer(handle, account)."""
        ...

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        """ACL.isPubliclyDecryptable(handle)."""
        ...


@dataclass(frozen=True)
class Delegations:
    """The KMS nodes' signed answers to one Delegate batch, passed through unchanged."""

    envelopes: tuple[SignedEnvelope, ...]
    """At least t valid responses (verified: KMS signer, audience, request hash, shape)."""
    request_hash: bytes
    """keccak256 of the DelegatePayload bytes every node was sent."""
    threshold: int
    epoch: int


class KmsClient(Protocol):
    """Fans one Delegate batch out to the KMS nodes and returns enough valid answers."""

    @property
    def public(self) -> ThresholdPublicKey:
        """The published threshold key set (PK, PK_i, t, epoch)."""
        ...

    async def delegate(
        self,
        *,
        requester_key: common_pb2.RequesterKey,
        targets: Sequence[tuple[bytes, bytes]],
        bindings: Sequence[common_pb2.HandleBinding] = (),
        runner_request: SignedEnvelope | None = None,
        user_authorization: decryption_pb2.DecryptionAuthorization | None = None,
        public_decryption: bool = False,
        tag_key: kms_pb2.TagKeyAuthorization | None = None,
        want: int | None = None,
    ) -> Delegations:
        """Delegate the (handle, K) `targets` to `requester_key` under one authorization;
        `bindings` are the targets' producer bindings, in the same order.

        Returns at least t (or `want`) valid answers; raises QuorumNotReached otherwise.
        """
        ...


class Serialized:
    """One lock around the blocking chain views (web3 clients and the embedded EVM are not
    safe to call from several threads at once)."""

    def __init__(self, directory: NodeDirectory, acl: AclView) -> None:
        self._directory = directory
        self._acl = acl
        self._lock = threading.Lock()

    @property
    def lock(self) -> threading.Lock:
        """The lock; hold it for any other use of the same chain backend from this process."""
        return self._lock

    def require(self, address: bytes, role: int, now: int) -> object:
        with self._lock:
            return self._directory.require(address, role, now)

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        with self._lock:
            return self._directory.require_producer(address, role, now)

    def refresh(self) -> None:
        """Re-read the registry now (after the gateway registered), when the view can."""
        refresh = getattr(self._directory, "refresh", None)
        if callable(refresh):
            with self._lock:
                refresh()

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        with self._lock:
            return bool(self._acl.is_viewer(handle, account))

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        with self._lock:
            return bool(self._acl.is_publicly_decryptable(handle))


@dataclass(frozen=True)
class GatewayLimits:
    """The gateway's request limits and timing tolerances (see `GatewaySettings`)."""

    max_batch_handles: int = 256
    max_plaintext_bytes: int = 64 * 1024
    max_public_request_bytes: int = 128 * 1024
    """Largest request of a public method (EncryptInput, Decrypt, ...), in bytes."""
    max_envelope_bytes: int = 4 * 1024 * 1024
    """Largest signed envelope (a StoreResults request carries the largest ones)."""
    max_operands_request_bytes: int = 1024 * 1024
    """Largest GetOperands request (a runner's envelope around its assignment chain)."""
    input_ttl_seconds: int = 6 * 3600
    """An input no task referenced is deleted this long after it was stored (see
    nox/gateway/expiry.py for what "referenced" means and why 6 hours)."""
    max_authorization_seconds: int = 3600
    response_ttl: int = 60
    max_skew: int = 30
    max_envelope_ttl: int = 3600

    def __post_init__(self) -> None:
        if (
            min(
                self.max_batch_handles,
                self.max_plaintext_bytes,
                self.response_ttl,
                self.input_ttl_seconds,
            )
            < 1
        ):
            raise InvalidArgument("gateway limits must be positive")
        if not 0 < self.max_authorization_seconds <= 3600:
            raise InvalidArgument("max_authorization_seconds must be in 1..3600")
        if self.max_public_request_bytes < self.max_plaintext_bytes + 1024:
            raise InvalidArgument(
                "max_public_request_bytes must exceed max_plaintext_bytes by 1024 at least"
            )
        if min(self.max_envelope_bytes, self.max_operands_request_bytes) < 1024:
            raise InvalidArgument("signed request limits must be 1024 bytes at least")


class ReferenceMarks:
    """Inputs served to a task, to be marked referenced in the store (they then never expire,
    nox/gateway/expiry.py) in batches: one UPDATE per `batch` handles or per flush of the
    sweeper (every second), not one write per GetOperands. Marks not yet flushed when the
    process dies are lost; such an input was computed on already, and the sweep still keeps
    it if a contract persisted it (ACL)."""

    def __init__(self, batch: int = 256) -> None:
        self._pending: set[bytes] = set()
        self._batch = batch

    def __len__(self) -> int:
        return len(self._pending)

    def note(self, handles: Sequence[bytes]) -> bool:
        """Remember `handles`; True when a batch is full (the caller should flush)."""
        self._pending.update(handles)
        return len(self._pending) >= self._batch

    async def flush(self, store: AsyncHandleStore) -> None:
        """Mark every pending handle referenced in `store` (taken before the writes, so
        handles noted meanwhile wait for the next flush)."""
        pending, self._pending = sorted(self._pending), set()
        for start in range(0, len(pending), self._batch):
            await store.mark_referenced(pending[start : start + self._batch])


@dataclass(frozen=True)
class Deployment:
    """The contracts of the deployment the gateway serves (one chain)."""

    chain_id: int
    registry_address: bytes
    compute_address: bytes
    acl_address: bytes = bytes(20)

    def __post_init__(self) -> None:
        if not 0 < self.chain_id < 2**32:
            raise InvalidArgument("chain id must fit 32 bits")
        for name in ("registry_address", "compute_address", "acl_address"):
            if len(getattr(self, name)) != 20:
                raise InvalidArgument(f"{name} must be 20 bytes")

    def to_proto(self) -> common_pb2.Deployment:
        return common_pb2.Deployment(
            chain_id=self.chain_id,
            registry_address=self.registry_address,
            compute_address=self.compute_address,
            acl_address=self.acl_address,
        )


def _now() -> int:
    return int(time.time())


@dataclass
class GatewayContext:
    """Everything the gateway's methods need; built once by `nox.gateway.server`."""

    key: EnclaveKey
    deployment: Deployment
    store: AsyncHandleStore
    directory: NodeDirectory
    acl: AclView
    kms: KmsClient
    replay: ReplayCache
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    clock: Callable[[], int] = _now
    rand: Callable[[int], bytes] = os.urandom
    ready: bool = True
    dangerous_accept_plaintext_inputs: bool = False
    """Accept EncryptInput's bare `plaintext` field (it crossed the wire readable by anyone
    on the path); off: only inputs sealed to the enclave key (PLAINTEXT_INPUT_REFUSED)."""
    attestation: Attestation | None = None
    """The attestation bootstrap the directory verifies peers with (production wiring)."""
    referenced: ReferenceMarks = field(default_factory=ReferenceMarks)
    """Inputs served in GetOperands, not yet marked referenced in the store."""
    tag_key: TagKey | None = field(default=None, repr=False)
    """The value-tag key (`nox.gateway.tagkey`), derived through the KMS before serving;
    in memory only."""
    domain: Domain = field(init=False)
    """The signed-envelope domain {Nox, 1, chainId, NoxRegistry}."""
    compute_domain: Domain = field(init=False)
    """The NoxCompute domain of input and decryption proofs."""
    bindings: BindingVerifier = field(init=False)
    """Checks stored rows against their producer bindings (with an LRU of signers)."""

    def __post_init__(self) -> None:
        d = self.deployment
        self.domain = Domain(chain_id=d.chain_id, verifying_contract=d.registry_address)
        self.compute_domain = Domain(
            chain_id=d.chain_id, verifying_contract=d.compute_address, name=COMPUTE_DOMAIN_NAME
        )
        self.bindings = BindingVerifier(self.domain, self.directory)

    def require_tag_key(self) -> TagKey:
        """The value-tag key; UNAVAILABLE until `nox.gateway.tagkey.derive_tag_key` ran."""
        if self.tag_key is None:
            raise Unavailable("the gateway does not hold the value-tag key yet")
        return self.tag_key

    @property
    def address(self) -> bytes:
        """The gateway's enclave address: audience of its requests, signer of its answers."""
        return self.key.address
