"""Who may have a KMS node's partials: the checks of `KmsService.Delegate` (DESIGN §6).

A request is served only when all of these hold, checked in this order (cheap first; the
outer nonce is recorded only once the signer is known to be an active gateway):

1. The outer envelope (`DelegatePayload`) verifies (`nox.crypto.envelope`): audience this
   node, window, signature, signer a registered and attested GATEWAY, nonce never seen.
2. Its `authorization` is one of (kms.proto `DelegatePayload.authorization`):

   - `runner_request`: the runner-signed GetOperands envelope, audience that gateway,
     signer a registered RUNNER; inside it the orchestrator-signed `TaskAssignment`,
     audience that runner, signer a registered ORCHESTRATOR. The assignment's
     `runner_address` is the runner, its task id the request's, its lease not over
     (LEASE_EXPIRED); every target handle is one the runner asked for and one of the
     assignment's `input_handles` (HANDLE_NOT_IN_ASSIGNMENT); the requester key is the
     runner's per-task key.
   - `user_authorization`: the user's EIP-712 `DecryptionAuthorization`, re-checked here
     (EOA signature, chain, window of at most an hour, handle list: see
     `nox.kms.authorization`); the ACL (`isViewer`) check is the gateway's, and the
     gateway's signature on the outer envelope attests it. The requester key is the
     authorization's.
   - `public_decryption`: every target handle must be publicly decryptable on-chain (an
     injected ACL check; a node without one refuses).
   - `tag_key` (issue 14, docs/kms.md "Tag key"): the one target's point must be exactly the
     deployment's P_tag (`nox.crypto.tags.tag_point`); the requester is the gateway itself
     (empty `runner_request`, any requester key) or a registered RUNNER whose signed
     GetTagKey envelope (audience that gateway) names the request's requester key.
3. Whatever the authorization, the point P_tag is served under `tag_key` only
   (TAG_KEY_TARGET_INVALID): a database writer could otherwise put P_tag as the K of a
   handle it may view and decrypt the tag key through a user or public request. This check
   (`check_tag_targets`) is apart from the per-handle checks: the tag-key target is a fixed
   point, not a stored handle, so no handle binding applies to it.

3. For each of these three kinds, every target's (handle, K) is covered by its producer
   binding (`require_bindings`, `nox.crypto.binding`): signed by a gateway (inputs) or a
   runner (task outputs) that is or was registered with a verified quote and was never
   revoked (BINDING_MISSING, BINDING_INVALID). Each distinct signature is recovered once per
   request, and recent ones are cached. An authorization kind whose targets are not stored
   handles (a fixed curve point) does not call it.

The relayed envelopes (runner request, assignment) are credentials presented to all n
nodes and possibly retried: their signatures, roles, audiences and windows are checked, but
their nonces are not recorded — the outer envelope carries the replay protection
(docs/api.md, "Envelopes inside payloads").

The registry is injected as a `NodeDirectory` (the chain layer's `RegistryView.require`),
which raises PermissionDenied subclasses (SIGNER_NOT_REGISTERED, ROLE_MISMATCH, ...).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from google.protobuf.message import Message

from nox.crypto.binding import BindingVerifier
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import Verified, verify_envelope
from nox.crypto.replay import RELAYED, ReplayCache
from nox.crypto.tags import tag_point
from nox.kms.authorization import verify_authorization
from nox.kms.exceptions import (
    AssignmentLeaseExpired,
    DelegationNotAuthorized,
    HandleNotInAssignment,
    NotPubliclyDecryptable,
    TagKeyTargetInvalid,
)
from nox.kms.wire import binding_from_proto
from nox.v1 import common_pb2, kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope
from nox.v1.gateway_pb2 import GetOperandsPayload, GetTagKeyPayload
from nox.v1.task_pb2 import TaskAssignment

M = TypeVar("M", bound=Message)

ROLE_ORCHESTRATOR = common_pb2.ROLE_ORCHESTRATOR
ROLE_RUNNER = common_pb2.ROLE_RUNNER
ROLE_GATEWAY = common_pb2.ROLE_GATEWAY
ROLE_KMS = common_pb2.ROLE_KMS

PublicDecryptableCheck = Callable[[bytes], bool]
"""`ACL.isPubliclyDecryptable(handle)`, as the chain layer answers it."""


class NodeDirectory(Protocol):
    """Who is registered: raises PermissionDenied unless `address` is active in `role`."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise unless `address` is registered, attested and unexpired in `role` at `now`.

        The return value (RegistryView returns the node's record) is not used.
        """
        ...


class ProducerAwareDirectory(NodeDirectory, Protocol):
    """A NodeDirectory that also answers for producers of handle bindings."""

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        """Like `require`, but an expired (never revoked) registration is accepted."""
        ...


class AuthorizationKind(enum.Enum):
    """Which of the three authorizations a served request carried."""

    RUNNER = "runner"
    USER = "user"
    PUBLIC = "public"
    TAG_KEY = "tag_key"


@dataclass(frozen=True)
class Authorized:
    """What a request was authorized by (for logs and metrics; no secret in it)."""

    kind: AuthorizationKind
    # The runner (runner request, runner's tag key), user (user authorization) or gateway
    # (public decryption, gateway's own tag key).
    subject: bytes
    # The task id of a runner request; empty otherwise.
    task_id: bytes = b""


@dataclass(frozen=True)
class DelegationPolicy:
    """Everything the checks need besides the request: the node's identity and views."""

    domain: Domain
    # This node's enclave address: the audience of every request it serves.
    node_address: bytes
    directory: ProducerAwareDirectory
    # Tolerated clock skew and longest accepted envelope window, seconds.
    max_skew: int = 30
    max_envelope_ttl: int = 3600
    is_publicly_decryptable: PublicDecryptableCheck | None = None
    # Requests are served from worker threads; registry views cache and refresh without
    # locks of their own, so lookups are serialized here (they are cheap when cached).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    bindings: BindingVerifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bindings", BindingVerifier(self.domain, _Locked(self)))

    def require_bindings(self, targets: Sequence[kms_pb2.DelegationTarget], now: int) -> None:
        """Step 3: every target's (handle, K) is bound by a registered producer."""
        self.bindings.verify(
            [
                (
                    bytes(t.handle),
                    bytes(t.ephemeral_public_key),
                    binding_from_proto(t.binding) if t.HasField("binding") else None,
                )
                for t in targets
            ],
            now=now,
        )

    def _role(self, role: int, now: int) -> Callable[[bytes], None]:
        """The envelope's `authorize` hook: the signer must be active in `role` at `now`."""

        def check(signer: bytes) -> None:
            with self._lock:
                self.directory.require(signer, role, now)

        return check

    def _relayed(
        self, envelope: SignedEnvelope, message: type[M], *, audience: bytes, role: int, now: int
    ) -> Verified[M]:
        """Verify a credential relayed inside the request (signature, signer in `role`,
        audience, window); its nonce is not recorded (see the module docstring)."""
        return verify_envelope(
            envelope,
            message,
            domain=self.domain,
            audience=audience,
            now=now,
            replay=RELAYED,
            max_skew=self.max_skew,
            max_ttl=self.max_envelope_ttl,
            authorize=self._role(role, now),
        )

    def require_self(self, address: bytes, now: int) -> object:
        """Raise unless this node (`address`) is itself an active, attested KMS node;
        returns the registry's record of it."""
        with self._lock:
            return self.directory.require(address, ROLE_KMS, now)

    def open_request(
        self, envelope: SignedEnvelope, *, now: int, replay: ReplayCache
    ) -> Verified[kms_pb2.DelegatePayload]:
        """Step 1: verify the gateway's envelope, record its nonce, parse the payload."""
        return verify_envelope(
            envelope,
            kms_pb2.DelegatePayload,
            domain=self.domain,
            audience=self.node_address,
            now=now,
            replay=replay,
            max_skew=self.max_skew,
            max_ttl=self.max_envelope_ttl,
            authorize=self._role(ROLE_GATEWAY, now),
        )

    def authorize(
        self,
        payload: kms_pb2.DelegatePayload,
        *,
        gateway: bytes,
        handles: Sequence[bytes],
        now: int,
    ) -> Authorized:
        """Step 2: check the payload's authorization covers `handles` for its requester key.

        `gateway` is the verified signer of the outer envelope. Raises PermissionDenied
        subclasses (or the signature and window errors of the relayed credentials).
        """
        which = payload.WhichOneof("authorization")
        if which == "runner_request":
            runner = self._runner(payload, gateway=gateway, handles=handles, now=now)
            self.require_bindings(payload.targets, now)
            return runner
        if which == "user_authorization":
            auth = payload.user_authorization
            if not _same_key(auth.requester_key, payload.requester_key):
                raise DelegationNotAuthorized("requester key is not the authorization's")
            user = verify_authorization(auth, domain=self.domain, now=now, handles=handles)
            self.require_bindings(payload.targets, now)
            return Authorized(AuthorizationKind.USER, user)
        if which == "public_decryption":
            self._public(handles)
            self.require_bindings(payload.targets, now)
            return Authorized(AuthorizationKind.PUBLIC, gateway)
        if which == "tag_key":
            return self._tag_key(payload, gateway=gateway, now=now)
        raise DelegationNotAuthorized("request carries no authorization")

    def _runner(
        self,
        payload: kms_pb2.DelegatePayload,
        *,
        gateway: bytes,
        handles: Sequence[bytes],
        now: int,
    ) -> Authorized:
        runner = self._relayed(
            payload.runner_request, GetOperandsPayload, audience=gateway, role=ROLE_RUNNER, now=now
        )
        operands = runner.message
        if not _same_key(operands.requester_key, payload.requester_key):
            raise DelegationNotAuthorized("requester key is not the runner's per-task key")
        assignment = self._relayed(
            operands.assignment,
            TaskAssignment,
            audience=runner.signer,
            role=ROLE_ORCHESTRATOR,
            now=now,
        ).message
        if assignment.runner_address != runner.signer:
            raise DelegationNotAuthorized("the assignment is for another runner")
        if assignment.task_id != operands.task_id:
            raise DelegationNotAuthorized("runner request and assignment name different tasks")
        if assignment.lease_expires_at <= now:
            raise AssignmentLeaseExpired(
                "the assignment's lease has ended", metadata={"task_id": operands.task_id.hex()}
            )
        requested, inputs = set(operands.handles), set(assignment.input_handles)
        for handle in handles:
            if handle not in inputs:
                raise HandleNotInAssignment(
                    "handle is not an input of the runner's assignment",
                    metadata={"handle": handle.hex()},
                )
            if handle not in requested:
                raise DelegationNotAuthorized(
                    "handle is not one the runner asked for", metadata={"handle": handle.hex()}
                )
        return Authorized(AuthorizationKind.RUNNER, runner.signer, bytes(operands.task_id))

    def check_tag_targets(self, payload: kms_pb2.DelegatePayload) -> None:
        """Step 3: P_tag under the tag-key authorization, and only there (module docstring).

        Compares the compressed encodings: the node has parsed every target point, and a
        point has one compressed encoding.
        """
        point = tag_point(self.domain)
        if payload.WhichOneof("authorization") == "tag_key":
            if len(payload.targets) != 1 or payload.targets[0].ephemeral_public_key != point:
                raise TagKeyTargetInvalid("a tag-key request has exactly one target: P_tag")
            return
        for target in payload.targets:
            if target.ephemeral_public_key == point:
                raise TagKeyTargetInvalid(
                    "the tag-key point is served under the tag-key authorization only",
                    metadata={"handle": target.handle.hex()},
                )

    def _tag_key(self, payload: kms_pb2.DelegatePayload, *, gateway: bytes, now: int) -> Authorized:
        """The gateway's own tag key, or a registered runner's request relayed by it."""
        auth = payload.tag_key
        if not auth.HasField("runner_request"):
            return Authorized(AuthorizationKind.TAG_KEY, gateway)
        runner = self._relayed(
            auth.runner_request, GetTagKeyPayload, audience=gateway, role=ROLE_RUNNER, now=now
        )
        if not _same_key(runner.message.requester_key, payload.requester_key):
            raise DelegationNotAuthorized("requester key is not the runner's tag-key request's")
        return Authorized(AuthorizationKind.TAG_KEY, runner.signer)

    def _public(self, handles: Sequence[bytes]) -> None:
        check = self.is_publicly_decryptable
        if check is None:
            raise DelegationNotAuthorized("this node has no ACL view for public decryption")
        for handle in handles:
            if not check(handle):
                raise NotPubliclyDecryptable(
                    "handle is not publicly decryptable", metadata={"handle": handle.hex()}
                )


class _Locked:
    """The policy's directory as a ProducerDirectory, behind the policy's lock."""

    def __init__(self, policy: DelegationPolicy) -> None:
        self._policy = policy

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        with self._policy._lock:
            return self._policy.directory.require_producer(address, role, now)


def requiring(directory: NodeDirectory, role: int, now: int) -> Callable[[bytes], None]:
    """The envelope's `authorize` hook: the signer must be active in `role` at `now`."""

    def check(signer: bytes) -> None:
        directory.require(signer, role, now)

    return check


def _same_key(a: common_pb2.RequesterKey, b: common_pb2.RequesterKey) -> bool:
    return a.kind == b.kind and a.public_key == b.public_key
