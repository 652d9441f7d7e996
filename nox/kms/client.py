"""Requester side of `KmsService.Delegate`: check the KMS nodes' signed answers, collect partials.

The gateway receives one signed `DelegateResponse` per KMS node and passes the envelopes on
unchanged (to a runner, or back to itself for a user/public decryption). Whoever holds the
requester key calls `collect_partials` (verify each envelope: a registered KMS signer,
audience the gateway, same epoch, one delegation per target in order), then
`combine_targets` (open, check each DLEQ proof against the published `PK_i`, name bad nodes,
combine t) to get one shared point per target; `open_tag_key` does both for the
value-tag key. A node whose whole response is refused is
listed with index 0 when its envelope could not even be verified (the index inside is not
trusted before that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nox.crypto.delegation import (
    BadNode,
    Combination,
    RequesterKey,
    RequesterKeyKind,
    SealedPartial,
    combine_partials,
    delegation_context,
)
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import verify_envelope
from nox.crypto.replay import RELAYED
from nox.crypto.tags import TAG_KEY_HANDLE, TagKey, tag_key_from_point, tag_point
from nox.crypto.threshold import ThresholdPublicKey
from nox.errors import NoxError
from nox.kms.authz import NodeDirectory, requiring
from nox.kms.wire import proof_from_proto, sealed_from_proto
from nox.v1 import kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

ROLE_KMS = 4


@dataclass(frozen=True)
class CollectedPartials:
    """Per target (request order) the answers of the accepted nodes; the refused responses."""

    per_target: tuple[tuple[SealedPartial, ...], ...]
    rejected: tuple[BadNode, ...]


def collect_partials(
    responses: Sequence[SignedEnvelope],
    *,
    targets: Sequence[tuple[bytes, bytes]],
    public: ThresholdPublicKey,
    requester_kind: RequesterKeyKind,
    domain: Domain,
    audience: bytes,
    registry: NodeDirectory,
    now: int,
    request_hash: bytes | None = None,
) -> CollectedPartials:
    """Verify each KMS response envelope and split it into per-target sealed partials.

    `targets` are the request's (handle, K) pairs in order; `audience` the gateway the
    nodes answered; `request_hash` (keccak256 of the DelegatePayload bytes), when the
    caller knows it (the gateway), must match. Each partial carries its response's DLEQ
    context. Never raises for one bad response: it is listed in `rejected`.
    """
    per_target: list[list[SealedPartial]] = [[] for _ in targets]
    rejected: list[BadNode] = []
    for envelope in responses:
        try:
            verified = verify_envelope(
                envelope,
                kms_pb2.DelegateResponsePayload,
                domain=domain,
                audience=audience,
                now=now,
                replay=RELAYED,
                authorize=requiring(registry, ROLE_KMS, now),
            )
        except NoxError as exc:
            rejected.append(BadNode(0, f"response envelope refused: {exc.reason}"))
            continue
        payload = verified.message
        index = payload.node_index
        why = _response_problem(payload, targets, public, request_hash)
        if why is None:
            try:
                proofs = [proof_from_proto(d.proof) for d in payload.delegations]
            except NoxError:
                why = "malformed DLEQ proof"
        if why is not None:
            rejected.append(BadNode(index, why))
            continue
        context = delegation_context(epoch=payload.epoch, request_id=payload.request_hash)
        for slot, delegation, proof in zip(per_target, payload.delegations, proofs, strict=True):
            sealed = sealed_from_proto(requester_kind, delegation.encrypted_partial)
            slot.append(SealedPartial(index, sealed, proof, context))
    return CollectedPartials(tuple(tuple(p) for p in per_target), tuple(rejected))


def _response_problem(
    payload: kms_pb2.DelegateResponsePayload,
    targets: Sequence[tuple[bytes, bytes]],
    public: ThresholdPublicKey,
    request_hash: bytes | None,
) -> str | None:
    if not 1 <= payload.node_index <= public.n:
        return "unknown node index"
    if payload.epoch != public.epoch:
        return "another key epoch"
    if request_hash is not None and payload.request_hash != request_hash:
        return "answer to another request"
    if len(payload.delegations) != len(targets):
        return "not one delegation per target"
    for delegation, (handle, k_point) in zip(payload.delegations, targets, strict=True):
        if delegation.handle != handle or delegation.ephemeral_public_key != k_point:
            return "delegations out of order or for other ciphertexts"
    return None


def combine_targets(
    collected: CollectedPartials,
    *,
    targets: Sequence[tuple[bytes, bytes]],
    public: ThresholdPublicKey,
    requester_key: RequesterKey,
    stop_at_threshold: bool = True,
) -> list[Combination]:
    """One combination (shared point S = x·K, nodes used, bad nodes) per target, in order.

    Raises QuorumNotReached for the first target with fewer than t valid partials.
    """
    return [
        combine_partials(
            public,
            k_point,
            partials,
            context=b"",  # unused: every collected partial carries its response's context
            requester_key=requester_key,
            stop_at_threshold=stop_at_threshold,
        )
        for (_, k_point), partials in zip(targets, collected.per_target, strict=True)
    ]


def tag_key_targets(domain: Domain) -> list[tuple[bytes, bytes]]:
    """The one (handle, K) target of a tag-key request: (32 zero bytes, P_tag)."""
    return [(TAG_KEY_HANDLE, tag_point(domain))]


def open_tag_key(
    responses: Sequence[SignedEnvelope],
    *,
    public: ThresholdPublicKey,
    requester_key: RequesterKey,
    domain: Domain,
    audience: bytes,
    registry: NodeDirectory,
    now: int,
    request_hash: bytes | None = None,
) -> TagKey:
    """The value-tag key from the KMS answers to a tag-key request (docs/kms.md, "Tag key").

    The same checks as for any delegation (`collect_partials`: signer, audience, epoch,
    the target being P_tag; `combine_targets`: opening, DLEQ proofs against PK_i, t
    partials), then `tag_key_from_point`. Raises QuorumNotReached with fewer than t valid
    partials. The caller keeps the key in memory only.
    """
    targets = tag_key_targets(domain)
    collected = collect_partials(
        responses,
        targets=targets,
        public=public,
        requester_kind=requester_key.public.kind,
        domain=domain,
        audience=audience,
        registry=registry,
        now=now,
        request_hash=request_hash,
    )
    (combination,) = combine_targets(
        collected, targets=targets, public=public, requester_key=requester_key
    )
    return tag_key_from_point(combination.shared_point, domain)
