"""`GatewayService` (nox/v1/gateway.proto): the thin gRPC servicer of the Handle Gateway.

Each method checks its request size (and, for the public calls, the caller's rate limit),
then hands over to the domain module that does the work:

| method | module | caller |
| --- | --- | --- |
| EncryptInput | `nox.gateway.inputs` | public, rate limited, input quota |
| GetOperands | `nox.gateway.operands` | ROLE_RUNNER envelope |
| StoreResults | `nox.gateway.results` | ROLE_ORCHESTRATOR envelope |
| Decrypt | `nox.gateway.decrypt` | user authorization, rate limited |
| PublicDecrypt | `nox.gateway.decrypt` | public, rate limited |
| GetTagKey | `nox.gateway.tagkey` | ROLE_RUNNER envelope |
| GetHandleStatus, GetGatewayInfo | here | public, rate limited |

Typed errors travel to `nox.rpc`'s error interceptor (google.rpc.Status + ErrorInfo);
per-method metrics (calls, codes, latency) come from `nox.rpc`'s metrics interceptor.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import Message

from nox import __version__
from nox.gateway import decrypt, inputs, operands, results, tagkey
from nox.gateway.checks import check_handles
from nox.gateway.context import ROLE_GATEWAY, GatewayContext
from nox.gateway.limits import INPUT_ROW_COST, RateLimit, RateLimiter, check_size, client_key
from nox.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

SERVICE_NAME = "nox.v1.GatewayService"
DEFAULT_INPUT_QUOTA = RateLimit(rate=16 * 1024, burst=1024 * 1024)
"""Input bytes per client: 16 KiB/s sustained, 1 MiB at once (GatewaySettings)."""

Context = grpc.aio.ServicerContext[object, object]


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    """The gRPC face of one gateway instance (see the module docstring)."""

    def __init__(
        self, ctx: GatewayContext, limiter: RateLimiter, inputs: RateLimiter | None = None
    ) -> None:
        self.ctx = ctx
        self.limiter = limiter
        # The input quota, in stored bytes per client (EncryptInput only).
        self.input_limiter = inputs if inputs is not None else RateLimiter(DEFAULT_INPUT_QUOTA)

    def __repr__(self) -> str:
        return f"GatewayServicer(address=0x{self.ctx.address.hex()})"

    def _public(self, request: Message, context: Context, what: str, cost: float = 1.0) -> None:
        self.limiter.check(client_key(context.peer()), cost)
        check_size(request, self.ctx.limits.max_public_request_bytes, what)

    async def GetGatewayInfo(
        self, request: gateway_pb2.GetGatewayInfoRequest, context: Context
    ) -> gateway_pb2.GetGatewayInfoResponse:
        """Public: identity, deployment, KMS key and limits."""
        self._public(request, context, "request")
        ctx = self.ctx
        public = ctx.kms.public
        return gateway_pb2.GetGatewayInfoResponse(
            node=common_pb2.NodeInfo(
                enclave_address=ctx.address,
                role=ROLE_GATEWAY,
                ready=ctx.ready,
                software_version=__version__,
                deployment=ctx.deployment.to_proto(),
            ),
            kms_public_key=public.public_key,
            kms_epoch=public.epoch,
            kms_threshold=public.threshold,
            max_batch_handles=ctx.limits.max_batch_handles,
            max_plaintext_bytes=ctx.limits.max_plaintext_bytes,
            max_authorization_seconds=ctx.limits.max_authorization_seconds,
            enclave_public_key=ctx.key.public_key,
        )

    async def EncryptInput(
        self, request: gateway_pb2.EncryptInputRequest, context: Context
    ) -> gateway_pb2.EncryptInputResponse:
        """Public: open a sealed user input, encrypt it under the KMS key, store, prove."""
        self._public(request, context, "request")
        # what the input will take in the store: its (sealed or bare) plaintext and a row
        cost = request.ByteSize() + INPUT_ROW_COST
        self.input_limiter.check(client_key(context.peer()), cost, what="input bytes")
        return await inputs.encrypt_input(self.ctx, request)

    async def GetOperands(
        self, request: gateway_pb2.GetOperandsRequest, context: Context
    ) -> gateway_pb2.GetOperandsResponse:
        """Signed by a runner: ciphertexts and KMS partials of its task's inputs."""
        del context
        check_size(request, self.ctx.limits.max_envelope_bytes, "request")
        return await operands.get_operands(self.ctx, request)

    async def StoreResults(
        self, request: gateway_pb2.StoreResultsRequest, context: Context
    ) -> gateway_pb2.StoreResultsResponse:
        """Signed by an orchestrator: store a task's outputs atomically."""
        del context
        check_size(request, self.ctx.limits.max_envelope_bytes, "request")
        return await results.store_results(self.ctx, request)

    async def GetTagKey(
        self, request: gateway_pb2.GetTagKeyRequest, context: Context
    ) -> gateway_pb2.GetTagKeyResponse:
        """Signed by a runner: the KMS partials of the value-tag key, sealed to the runner."""
        del context
        check_size(request, self.ctx.limits.max_envelope_bytes, "request")
        return await tagkey.get_tag_key(self.ctx, request)

    async def Decrypt(
        self, request: gateway_pb2.DecryptRequest, context: Context
    ) -> gateway_pb2.DecryptResponse:
        """User-authorized: ciphertexts and KMS partials for an ACL viewer."""
        self._public(request, context, "request")
        return await decrypt.decrypt(self.ctx, request)

    async def PublicDecrypt(
        self, request: gateway_pb2.PublicDecryptRequest, context: Context
    ) -> gateway_pb2.PublicDecryptResponse:
        """Public: values and proofs of publicly decryptable handles."""
        self._public(request, context, "request")
        return await decrypt.public_decrypt(self.ctx, request)

    async def GetHandleStatus(
        self, request: gateway_pb2.GetHandleStatusRequest, context: Context
    ) -> gateway_pb2.GetHandleStatusResponse:
        """Public: stored or not, origin, task, time; never the value tag."""
        self._public(request, context, "request")
        handles = check_handles(self.ctx, request.handles)
        found = await self.ctx.store.status(handles)
        statuses = []
        for h in handles:
            s = found.get(h)
            if s is None:
                statuses.append(gateway_pb2.HandleStatus(handle=h))
                continue
            statuses.append(
                gateway_pb2.HandleStatus(
                    handle=h,
                    stored=True,
                    origin=gateway_pb2.HANDLE_ORIGIN_INPUT
                    if s.origin_task is None
                    else gateway_pb2.HANDLE_ORIGIN_TASK,
                    task_id=s.origin_task or b"",
                    created_at=s.created_at,
                )
            )
        return gateway_pb2.GetHandleStatusResponse(statuses=statuses)
