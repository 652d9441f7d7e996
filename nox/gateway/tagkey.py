"""The value-tag key at the gateway (docs/kms.md, "Tag key"; issue 14).

`derive_tag_key`: the gateway's own key, asked from t KMS nodes under the `tag_key`
authorization with a fresh requester key, checked and combined (`nox.kms.client.open_tag_key`)
and kept in `GatewayContext.tag_key`, in memory only. `nox.gateway.server` runs it before
the gateway reports SERVING; EncryptInput is UNAVAILABLE without it.

`get_tag_key` (GatewayService.GetTagKey): a registered runner's signed request, relayed to
the KMS nodes as the `tag_key` authorization (each node re-checks the runner's signature,
role and requester key); the answer is the nodes' signed envelopes, which only the runner
can open. The gateway learns nothing from relaying: the partials are sealed to the runner.
"""

from __future__ import annotations

import asyncio

from nox.crypto.delegation import RequesterKey
from nox.crypto.tags import TagKey
from nox.gateway.checks import open_signed
from nox.gateway.context import ROLE_RUNNER, GatewayContext
from nox.kms.client import open_tag_key, tag_key_targets
from nox.kms.wire import requester_key_from_proto, requester_key_to_proto
from nox.rpc.logging import get_logger
from nox.v1 import gateway_pb2, kms_pb2

_log = get_logger("nox.gateway.tagkey")


async def derive_tag_key(ctx: GatewayContext) -> TagKey:
    """Ask the KMS for the gateway's tag key, keep it in `ctx.tag_key` and return it."""
    key = RequesterKey.generate_secp256k1()
    delegations = await ctx.kms.delegate(
        requester_key=requester_key_to_proto(key.public),
        targets=tag_key_targets(ctx.domain),
        tag_key=kms_pb2.TagKeyAuthorization(),
    )
    tag_key = await asyncio.to_thread(
        open_tag_key,
        delegations.envelopes,
        public=ctx.kms.public,
        requester_key=key,
        domain=ctx.domain,
        audience=ctx.address,
        registry=ctx.directory,
        now=ctx.clock(),
        request_hash=delegations.request_hash,
    )
    ctx.tag_key = tag_key
    _log.info("gateway.tag_key_derived", epoch=delegations.epoch)  # never the key
    return tag_key


async def get_tag_key(
    ctx: GatewayContext, request: gateway_pb2.GetTagKeyRequest
) -> gateway_pb2.GetTagKeyResponse:
    """The whole GetTagKey call (see the module docstring)."""
    now = ctx.clock()
    runner = await asyncio.to_thread(
        open_signed, ctx, request.envelope, gateway_pb2.GetTagKeyPayload, role=ROLE_RUNNER, now=now
    )
    requester_key_from_proto(runner.message.requester_key)  # raises InvalidRequesterKey
    delegations = await ctx.kms.delegate(
        requester_key=runner.message.requester_key,
        targets=tag_key_targets(ctx.domain),
        tag_key=kms_pb2.TagKeyAuthorization(runner_request=request.envelope),
    )
    return gateway_pb2.GetTagKeyResponse(
        kms_delegations=delegations.envelopes,
        kms_threshold=delegations.threshold,
        kms_epoch=delegations.epoch,
    )
