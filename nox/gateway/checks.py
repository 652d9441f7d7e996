"""Checks shared by the gateway's methods: signed envelopes, handle lists, response signing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from google.protobuf.message import Message

from nox.crypto.envelope import Verified, sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.replay import RELAYED
from nox.errors import InvalidArgument
from nox.gateway.context import GatewayContext
from nox.gateway.exceptions import BatchTooLarge, WrongChain
from nox.handles import HANDLE_SIZE, InvalidHandle
from nox.v1.envelope_pb2 import SignedEnvelope

M = TypeVar("M", bound=Message)


def open_signed(
    ctx: GatewayContext,
    envelope: SignedEnvelope,
    message_type: type[M],
    *,
    role: int,
    now: int,
    audience: bytes | None = None,
    record: bool = True,
) -> Verified[M]:
    """Verify `envelope` (signer active in `role`), record its nonce unless `record` is False
    (a relayed credential), then parse it. Blocking (registry, replay store): call it in a
    worker thread."""
    return verify_envelope(
        envelope,
        message_type,
        domain=ctx.domain,
        audience=ctx.address if audience is None else audience,
        now=now,
        replay=ctx.replay if record else RELAYED,
        max_skew=ctx.limits.max_skew,
        max_ttl=ctx.limits.max_envelope_ttl,
        max_size=ctx.limits.max_envelope_bytes,
        authorize=lambda signer: _require(ctx, signer, role, now),
    )


def _require(ctx: GatewayContext, signer: bytes, role: int, now: int) -> None:
    ctx.directory.require(signer, role, now)


def sign_response(
    ctx: GatewayContext, payload: Message, *, audience: bytes, now: int
) -> SignedEnvelope:
    """The gateway's signed answer to `audience`."""
    return sign_envelope(
        ctx.key,
        payload,
        domain=ctx.domain,
        audience=audience,
        now=now,
        ttl=ctx.limits.response_ttl,
    )


def request_hash(envelope: SignedEnvelope) -> bytes:
    """keccak256 of a request envelope's payload bytes (the `request_hash` of answers)."""
    return keccak256(envelope.payload)


def check_handles(
    ctx: GatewayContext, handles: Sequence[bytes], *, field: str = "handles"
) -> list[bytes]:
    """Non-empty, at most `max_batch_handles`, each 32 bytes of this gateway's chain, distinct."""
    if not handles:
        raise InvalidArgument("no handles given", metadata={"field": field})
    limit = ctx.limits.max_batch_handles
    if len(handles) > limit:
        raise BatchTooLarge(
            f"{len(handles)} handles, at most {limit}", metadata={"limit": str(limit)}
        )
    out: list[bytes] = []
    for h in handles:
        if len(h) != HANDLE_SIZE or h[31] != 0:
            raise InvalidHandle(
                f"a handle is {HANDLE_SIZE} bytes with version 0", metadata={"field": field}
            )
        if int.from_bytes(h[26:30], "big") != ctx.deployment.chain_id:
            raise WrongChain(
                "handle belongs to another chain", metadata={"handle": "0x" + bytes(h).hex()}
            )
        out.append(bytes(h))
    if len(set(out)) != len(out):
        raise InvalidArgument("the same handle appears twice", metadata={"field": field})
    return out
