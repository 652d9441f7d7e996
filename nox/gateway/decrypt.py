"""Decrypt (a user's EIP-712 authorization) and PublicDecrypt (publicly decryptable handles).

Decrypt checks, in order: the handles (1..max_batch_handles distinct handles of this
chain); the authorization (`nox.kms.authorization.verify_authorization`, the same check
every KMS node repeats: window of at most max_authorization_seconds, not_before <= now <
expires_at, chain, the user's EOA signature, handle list); the on-chain ACL, `isViewer`
for every handle (ACL_DENIED) — before any existence check, so a non-viewer learns nothing
about what is stored; the handles are stored (HANDLE_NOT_FOUND); the rows match their
producer bindings (STORED_RECORD_TAMPERED, `nox.gateway.bindings`). Then one KMS batch to
the user's requester key (each target with its binding); the answer is the ciphertexts
and the KMS envelopes, not signed by the gateway (the KMS signatures, DLEQ proofs and
AES-GCM tags make tampering detectable).

PublicDecrypt checks `isPubliclyDecryptable` for every handle, fetches partials for a
fresh key of its own from all KMS nodes (so a lying node is named and outvoted), verifies
the DLEQ proofs, rebuilds the key, decrypts (the handle is the associated data), and signs
a DecryptionProof per handle (`nox.gateway.proofs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey
from nox.gateway.bindings import check_stored
from nox.gateway.checks import check_handles
from nox.gateway.context import GatewayContext
from nox.gateway.exceptions import AclDenied
from nox.gateway.operands import typed_ciphertext
from nox.gateway.proofs import make_decryption_proof
from nox.handles import ValueType, decode_plaintext
from nox.kms.authorization import AuthorizationWindowInvalid, verify_authorization
from nox.kms.client import collect_partials, combine_targets
from nox.kms.exceptions import NotPubliclyDecryptable
from nox.kms.wire import requester_key_from_proto, requester_key_to_proto
from nox.v1 import decryption_pb2, gateway_pb2


def check_viewer(
    ctx: GatewayContext,
    auth: decryption_pb2.DecryptionAuthorization,
    handles: Sequence[bytes],
    now: int,
) -> bytes:
    """Authorization then ACL checks; returns the user. Blocking: run it in a worker thread."""
    window = auth.expires_at - auth.not_before
    if auth.expires_at >= auth.not_before and window > ctx.limits.max_authorization_seconds:
        raise AuthorizationWindowInvalid(
            f"window must be at most {ctx.limits.max_authorization_seconds} seconds"
        )
    user = verify_authorization(auth, domain=ctx.domain, now=now, handles=handles)
    requester_key_from_proto(auth.requester_key)  # raises InvalidRequesterKey
    for handle in handles:
        if not ctx.acl.is_viewer(handle, user):
            raise AclDenied(
                "the user is not a viewer of the handle", metadata={"handle": "0x" + handle.hex()}
            )
    return user


async def decrypt(
    ctx: GatewayContext, request: gateway_pb2.DecryptRequest
) -> gateway_pb2.DecryptResponse:
    """The whole Decrypt call (see the module docstring)."""
    handles = check_handles(ctx, request.handles)
    auth = request.authorization
    await asyncio.to_thread(check_viewer, ctx, auth, handles, ctx.clock())
    stored = await ctx.store.require(handles)
    bindings = await asyncio.to_thread(check_stored, ctx.bindings, stored, now=ctx.clock())
    delegations = await ctx.kms.delegate(
        requester_key=auth.requester_key,
        targets=[(s.record.handle, s.record.ephemeral_public_key) for s in stored],
        bindings=bindings,
        user_authorization=auth,
    )
    return gateway_pb2.DecryptResponse(
        ciphertexts=[typed_ciphertext(s, b) for s, b in zip(stored, bindings, strict=True)],
        kms_delegations=delegations.envelopes,
        kms_threshold=delegations.threshold,
        kms_epoch=delegations.epoch,
    )


def _check_public(ctx: GatewayContext, handles: Sequence[bytes]) -> None:
    for handle in handles:
        if not ctx.acl.is_publicly_decryptable(handle):
            raise NotPubliclyDecryptable(
                "the handle is not publicly decryptable", metadata={"handle": "0x" + handle.hex()}
            )


async def public_decrypt(
    ctx: GatewayContext, request: gateway_pb2.PublicDecryptRequest
) -> gateway_pb2.PublicDecryptResponse:
    """The whole PublicDecrypt call (see the module docstring)."""
    handles = check_handles(ctx, request.handles)
    await asyncio.to_thread(_check_public, ctx, handles)
    stored = await ctx.store.require(handles)
    bindings = await asyncio.to_thread(check_stored, ctx.bindings, stored, now=ctx.clock())
    key = RequesterKey.generate_secp256k1()
    targets = [(s.record.handle, s.record.ephemeral_public_key) for s in stored]
    public = ctx.kms.public
    delegations = await ctx.kms.delegate(
        requester_key=requester_key_to_proto(key.public),
        targets=targets,
        bindings=bindings,
        public_decryption=True,
        want=public.n,
    )

    def open_all() -> list[bytes]:
        collected = collect_partials(
            delegations.envelopes,
            targets=targets,
            public=public,
            requester_kind=key.public.kind,
            domain=ctx.domain,
            audience=ctx.address,
            registry=ctx.directory,
            now=ctx.clock(),
            request_hash=delegations.request_hash,
        )
        combinations = combine_targets(
            collected, targets=targets, public=public, requester_key=key, stop_at_threshold=False
        )
        plaintexts = []
        for s, combination in zip(stored, combinations, strict=True):
            r = s.record
            ct = ecies.Ciphertext(r.ciphertext, r.ephemeral_public_key, r.nonce)
            plaintext = ecies.decrypt_with_shared_point(combination.shared_point, ct, r.handle)
            decode_plaintext(ValueType.from_code(r.type_code), plaintext)  # well-formed value
            plaintexts.append(plaintext)
        return plaintexts

    plaintexts = await asyncio.to_thread(open_all)
    return gateway_pb2.PublicDecryptResponse(
        decryptions=[
            decryption_pb2.PublicDecryption(
                handle=h,
                plaintext=p,
                decryption_proof=make_decryption_proof(ctx.key, ctx.compute_domain, h, p),
            )
            for h, p in zip(handles, plaintexts, strict=True)
        ]
    )
