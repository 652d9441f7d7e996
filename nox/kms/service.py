"""`KmsService` (nox/v1/kms.proto): the thin gRPC servicer over one `KmsNode`.

`GetPublicKey` is public; `Delegate` is checked and answered by `nox.kms.node.KmsNode`
(authorization in `nox.kms.authz`), in a worker thread so the elliptic-curve work does not
stall the event loop. Typed errors propagate to `nox.rpc`'s error interceptor, which sends
them as `google.rpc.Status` with one `ErrorInfo`. `nox.kms.server.serve` wires it all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from nox.kms.authz import NodeDirectory
from nox.kms.node import KmsNode, KmsNodeSettings
from nox.v1 import kms_pb2, kms_pb2_grpc

SERVICE_NAME = "nox.v1.KmsService"

__all__ = ["SERVICE_NAME", "KmsNodeSettings", "KmsServicer", "NodeDirectory"]


class KmsServicer(kms_pb2_grpc.KmsServiceServicer):
    """The gRPC face of one KMS node.

    Pass a built `KmsNode`; the keyword form (`KmsServicer(share=..., enclave_key=..., ...)`)
    builds one from `KmsNode`'s own keyword arguments.
    """

    def __init__(self, node: KmsNode | None = None, /, **node_arguments: Any) -> None:
        if node is None:
            node = KmsNode(**node_arguments)
        elif node_arguments:
            raise TypeError("pass either a KmsNode or KmsNode's keyword arguments, not both")
        self.node = node

    def __repr__(self) -> str:
        return f"KmsServicer({self.node!r})"

    async def GetPublicKey(
        self,
        request: kms_pb2.GetPublicKeyRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> kms_pb2.GetPublicKeyResponse:
        """Public: the key set this node serves (the registry holds the trusted copy)."""
        del request, context
        return self.node.public_key_response()

    async def Delegate(
        self, request: kms_pb2.DelegateRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> kms_pb2.DelegateResponse:
        """Signed by a gateway: partials, proofs, sealed to the requester, signed back."""
        del context
        return await asyncio.to_thread(self.node.delegate, request)

    def delegate(self, request: kms_pb2.DelegateRequest) -> kms_pb2.DelegateResponse:
        """`Delegate` without gRPC, synchronous (tests, in-process callers)."""
        return self.node.delegate(request)
