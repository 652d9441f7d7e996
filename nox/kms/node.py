"""One KMS node's domain logic: answer an authorized Delegate batch (DESIGN §6).

Given its verified share `x_i` (`nox.kms.keys.LoadedShare`), for each target ciphertext
point K of an authorized request the node computes `D_i = x_i·K`, a Chaum-Pedersen proof
that `log_G(PK_i) = log_K(D_i)` under the context (epoch, keccak256 of the request payload),
and seals `D_i` to the requester's key (`nox.crypto.delegation.make_sealed_partial`). The
answers go back in one `DelegateResponsePayload` signed by the node's enclave key for the
gateway that asked. Authorization is `nox.kms.authz`; the gRPC surface is
`nox.kms.service`. Everything here is synchronous and CPU-bound: the servicer runs it in a
worker thread.

The share never leaves this object: it is not logged, not in any error, not in a repr.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nox import __version__
from nox.crypto.delegation import delegation_context, make_sealed_partial
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import ReplayCache
from nox.crypto.threshold import Rand, ThresholdPublicKey, parse_point
from nox.errors import InvalidArgument, NoxError
from nox.handles import InvalidHandle
from nox.kms.authz import (
    ROLE_KMS,
    Authorized,
    DelegationPolicy,
    ProducerAwareDirectory,
    PublicDecryptableCheck,
)
from nox.kms.exceptions import DelegationBatchTooLarge, KeyEpochMismatch, NodeNotReady
from nox.kms.keys import LoadedShare
from nox.kms.wire import (
    proof_to_proto,
    public_key_to_proto,
    requester_key_from_proto,
    sealed_to_proto,
)
from nox.rpc.logging import get_logger
from nox.rpc.ratls import TlsIdentity, make_tls_identity
from nox.v1 import common_pb2, kms_pb2

HANDLE_SIZE = 32


@dataclass(frozen=True)
class KmsNodeSettings:
    """Limits of one KMS node (`nox.kms.config.KmsSettings` builds them from the environment)."""

    # Most ciphertext points in one Delegate request.
    max_batch: int = 256
    # Validity of the signed response, seconds.
    response_ttl: int = 60
    # Tolerated clock skew for incoming envelopes, seconds.
    max_skew: int = 30
    # Longest validity window accepted on an incoming envelope, seconds.
    max_envelope_ttl: int = 3600

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.response_ttl < 1 or self.max_skew < 0:
            raise InvalidArgument("max_batch and response_ttl must be positive, max_skew >= 0")
        if self.max_envelope_ttl < 1:
            raise InvalidArgument("max_envelope_ttl must be positive")


class KmsNode:
    """One KMS node: its verified share, its enclave key, the registry and a replay cache."""

    def __init__(
        self,
        *,
        share: LoadedShare,
        enclave_key: EnclaveKey,
        domain: Domain,
        registry: ProducerAwareDirectory,
        replay: ReplayCache,
        settings: KmsNodeSettings | None = None,
        is_publicly_decryptable: PublicDecryptableCheck | None = None,
        node_info: common_pb2.NodeInfo | None = None,
        clock: Callable[[], int] = lambda: int(time.time()),
        rand: Rand = secrets.token_bytes,
        logger: Any | None = None,
    ) -> None:
        self._share = share
        self._key = enclave_key
        self._domain = domain
        self._replay = replay
        self.settings = settings or KmsNodeSettings()
        self._clock = clock
        self._rand = rand
        self._log = logger if logger is not None else get_logger("nox.kms")
        self.policy = DelegationPolicy(
            domain=domain,
            node_address=enclave_key.address,
            directory=registry,
            max_skew=self.settings.max_skew,
            max_envelope_ttl=self.settings.max_envelope_ttl,
            is_publicly_decryptable=is_publicly_decryptable,
        )
        self._public_share = share.public.public_share(share.share.index)
        self.node_info = node_info if node_info is not None else self._default_node_info()
        # Whether this node is registered and attested (DESIGN §3: it refuses work until
        # it is); `nox.kms.server` keeps it current. True for a node built without a server.
        self.ready = True

    def __repr__(self) -> str:
        return f"KmsNode(index={self.index}, address=0x{self.address.hex()})"

    __str__ = __repr__

    @property
    def index(self) -> int:
        """This node's share index i (1..n)."""
        return self._share.share.index

    @property
    def address(self) -> bytes:
        """This node's enclave address: the audience of requests, the signer of answers."""
        return self._key.address

    def tls_identity(self, endpoint: str) -> TlsIdentity:
        """A fresh RA-TLS certificate and key for `endpoint`, bound to this node's enclave
        key (`nox.rpc.ratls`); in memory only."""
        return make_tls_identity(self._key, self._domain, endpoint, now=self._clock())

    @property
    def public(self) -> ThresholdPublicKey:
        """The published key set this node's share belongs to."""
        return self._share.public

    def _default_node_info(self) -> common_pb2.NodeInfo:
        return common_pb2.NodeInfo(
            enclave_address=self.address,
            role=ROLE_KMS,
            ready=True,
            software_version=__version__,
            deployment=common_pb2.Deployment(
                chain_id=self._domain.chain_id,
                registry_address=self._domain.verifying_contract,
            ),
        )

    def public_key_response(self) -> kms_pb2.GetPublicKeyResponse:
        """The public GetPublicKey answer (the registry holds the copy relying parties trust)."""
        info = common_pb2.NodeInfo()
        info.CopyFrom(self.node_info)
        info.ready = self.ready
        return public_key_to_proto(self.public, node_index=self.index, node=info)

    def now(self) -> int:
        """The node's clock (Unix seconds)."""
        return self._clock()

    def check_registered(self, now: int) -> bool:
        """Ask the registry whether this node is an active, attested KMS node; sets `ready`."""
        try:
            record = self.policy.require_self(self.address, now)
        except NoxError as exc:
            if self.ready:
                self._log.warning("kms.not_ready", reason=exc.reason, node_index=self.index)
            self.ready = False
        else:
            self.ready = True
            self._show_registration(record)
        return self.ready

    def _show_registration(self, record: object) -> None:
        """Copy what a registry record tells (RegistryView's `Node`) into the public NodeInfo."""
        info = self.node_info
        operator, workload = getattr(record, "operator", b""), getattr(record, "workload_id", b"")
        if isinstance(operator, bytes) and len(operator) == 20:
            info.operator_address = operator
        if isinstance(workload, bytes) and len(workload) == 32:
            info.workload_id = workload
        expires_at, endpoint = getattr(record, "expires_at", 0), getattr(record, "endpoint", "")
        if isinstance(expires_at, int) and 0 <= expires_at < 2**64:
            info.registration_expires_at = expires_at
        if isinstance(endpoint, str):
            info.endpoint = endpoint

    def delegate(self, request: kms_pb2.DelegateRequest) -> kms_pb2.DelegateResponse:
        """The whole Delegate call: verify, authorize, compute, prove, seal, sign.

        Raises the typed errors of `nox.crypto.envelope`, `nox.kms.authz`, the registry and
        the request checks below; nothing is computed for a request that is not authorized.
        """
        started = time.perf_counter()
        if not self.ready:
            raise NodeNotReady("this KMS node is not registered and attested (yet)")
        now = self._clock()
        verified = self.policy.open_request(request.envelope, now=now, replay=self._replay)
        payload, gateway = verified.message, verified.signer
        public = self.public
        if payload.epoch != public.epoch:
            raise KeyEpochMismatch(
                f"this node serves key epoch {public.epoch}, not {payload.epoch}",
                metadata={"epoch": str(public.epoch)},
            )
        requester = requester_key_from_proto(payload.requester_key)
        handles = self._check_targets(payload.targets)
        self.policy.check_tag_targets(payload)
        authorized = self.policy.authorize(payload, gateway=gateway, handles=handles, now=now)
        request_hash = keccak256(request.envelope.payload)
        context = delegation_context(epoch=public.epoch, request_id=request_hash)
        delegations = []
        for target in payload.targets:
            answer = make_sealed_partial(
                self._share.share,
                target.ephemeral_public_key,
                requester,
                context=context,
                public_share=self._public_share,
                rand=self._rand,
            )
            delegations.append(
                kms_pb2.Delegation(
                    handle=target.handle,
                    ephemeral_public_key=target.ephemeral_public_key,
                    encrypted_partial=sealed_to_proto(requester.kind, answer.sealed),
                    proof=proof_to_proto(answer.proof),
                )
            )
        response = kms_pb2.DelegateResponsePayload(
            request_hash=request_hash,
            node_index=self.index,
            epoch=public.epoch,
            delegations=delegations,
        )
        envelope = sign_envelope(
            self._key,
            response,
            domain=self._domain,
            audience=gateway,
            now=now,
            ttl=self.settings.response_ttl,
        )
        self._logged(authorized, gateway, request_hash, len(delegations), started)
        return kms_pb2.DelegateResponse(envelope=envelope)

    def _check_targets(self, targets: Sequence[kms_pb2.DelegationTarget]) -> list[bytes]:
        if not targets:
            raise InvalidArgument("no targets to delegate", metadata={"field": "targets"})
        if len(targets) > self.settings.max_batch:
            raise DelegationBatchTooLarge(
                f"{len(targets)} targets, limit {self.settings.max_batch}",
                metadata={"limit": str(self.settings.max_batch)},
            )
        handles = []
        for target in targets:
            if len(target.handle) != HANDLE_SIZE:
                raise InvalidHandle(f"a handle is {HANDLE_SIZE} bytes, got {len(target.handle)}")
            parse_point(target.ephemeral_public_key, "ephemeral public key K")
            handles.append(bytes(target.handle))
        return handles

    def _logged(
        self,
        authorized: Authorized,
        gateway: bytes,
        request_hash: bytes,
        count: int,
        started: float,
    ) -> None:
        # Addresses and hashes only, as hex strings; never a partial, a key or the share.
        self._log.info(
            "kms.delegated",
            node_index=self.index,
            gateway="0x" + gateway.hex(),
            authorization=authorized.kind.value,
            subject="0x" + authorized.subject.hex(),
            task_id=authorized.task_id.hex(),
            targets=count,
            request_hash=request_hash.hex(),
            seconds=round(time.perf_counter() - started, 6),
        )
