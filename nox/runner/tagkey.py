"""The value-tag key at a runner (docs/kms.md, "Tag key"; issue 14).

A runner tags every output with HMAC-SHA256(tag key, handle ‖ plaintext). It gets the key
through its gateway, which relays the request to the KMS nodes (GatewayService.GetTagKey):

1. `tag_key_request`: a fresh secp256k1 requester key and the runner-signed
   `GetTagKeyPayload` naming it, audience the gateway;
2. `open_tag_key_response`: the KMS nodes' envelopes checked and combined exactly as
   operand partials are (`nox.kms.client.open_tag_key`: registered KMS signers, audience
   the gateway, the key epoch, the target P_tag, DLEQ proofs against PK_i, t partials).

The requester key is dropped once the key is opened; the tag key lives in the executor's
memory only (never logged, written or sent). No I/O here: the agent does the RPC.
"""

from __future__ import annotations

from nox.crypto.delegation import RequesterKey
from nox.crypto.tags import TagKey
from nox.kms.client import open_tag_key
from nox.kms.wire import requester_key_to_proto
from nox.runner.exceptions import OperandsInvalid
from nox.runner.executor import TaskExecutor
from nox.v1 import gateway_pb2


def tag_key_request(
    executor: TaskExecutor, *, gateway: bytes, now: int
) -> tuple[gateway_pb2.GetTagKeyRequest, RequesterKey]:
    """The signed GetTagKey request to `gateway` and the requester key to open the answer."""
    key = RequesterKey.generate_secp256k1()
    payload = gateway_pb2.GetTagKeyPayload(requester_key=requester_key_to_proto(key.public))
    envelope = executor.sign(payload, audience=gateway, now=now)
    return gateway_pb2.GetTagKeyRequest(envelope=envelope), key


def open_tag_key_response(
    executor: TaskExecutor,
    response: gateway_pb2.GetTagKeyResponse,
    *,
    requester_key: RequesterKey,
    gateway: bytes,
    now: int,
) -> TagKey:
    """Check and combine the gateway's relayed KMS answers; give the executor the key."""
    public = executor.config.kms_public
    if response.kms_epoch != public.epoch:
        raise OperandsInvalid("the tag-key partials are for another KMS key epoch")
    tag_key = open_tag_key(
        response.kms_delegations,
        public=public,
        requester_key=requester_key,
        domain=executor.config.domain,
        audience=gateway,
        registry=executor,
        now=now,
    )
    executor.tag_key = tag_key
    return tag_key
