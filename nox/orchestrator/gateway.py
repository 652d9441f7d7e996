"""Forwarding results to the Handle Gateway (GatewayService.StoreResults).

`GatewayStore` is what the scheduler needs; `GrpcGatewayStore` signs the request as this
orchestrator (audience: the gateway's enclave address), calls the gateway, and accepts the
answer only when it is signed by that gateway (a ROLE_GATEWAY node of the registry),
addressed to this orchestrator and bound to the request (request_hash, task id, one outcome
per output handle). Only then may the queue message be acknowledged. A gateway that restarted
has a new enclave key and refuses the old audience (WRONG_AUDIENCE): the store asks
GetGatewayInfo for the new address once and sends the request again (the answer is still
checked as signed by a registered gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import grpc.aio

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, ReplayCache
from nox.errors import InvalidArgument, NoxError
from nox.orchestrator.directory import NodeDirectory
from nox.rpc.client import raise_typed
from nox.rpc.peers import PeerChannel
from nox.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

__all__ = ["GatewayStore", "GrpcGatewayStore"]


class GatewayStore(Protocol):
    """Stores one task's outputs atomically; returns the gateway's verified answer."""

    async def store(
        self, task_id: bytes, executions: Sequence[gateway_pb2.SignedExecution]
    ) -> gateway_pb2.StoreResultsResponsePayload:
        """Raise a typed NoxError (Unavailable when it may be retried) if nothing was stored."""
        ...


class GrpcGatewayStore:
    """StoreResults over gRPC with signed envelopes both ways (see the module docstring)."""

    def __init__(
        self,
        channel: grpc.aio.Channel | PeerChannel,
        *,
        key: EnclaveKey,
        domain: Domain,
        gateway_address: bytes,
        directory: NodeDirectory,
        clock: Callable[[], float],
        replay: ReplayCache | None = None,
        ttl: int = 60,
        timeout: float = 30.0,
    ) -> None:
        self._stub = (
            channel.stub(gateway_pb2_grpc.GatewayServiceStub)
            if isinstance(channel, PeerChannel)
            else gateway_pb2_grpc.GatewayServiceStub(channel)
        )
        self._key = key
        self._domain = domain
        self._gateway = bytes(gateway_address)
        self._directory = directory
        self._clock = clock
        self._replay = replay if replay is not None else MemoryReplayCache()
        self._ttl = ttl
        self._timeout = timeout

    async def store(
        self, task_id: bytes, executions: Sequence[gateway_pb2.SignedExecution]
    ) -> gateway_pb2.StoreResultsResponsePayload:
        gateway = self._gateway
        try:
            return await self._store(task_id, executions, gateway)
        except NoxError as exc:
            if exc.reason != "WRONG_AUDIENCE":
                raise
            await self._refresh_gateway()
            if self._gateway == gateway:  # (another store may have learnt it first)
                raise
        return await self._store(task_id, executions, self._gateway)

    async def _refresh_gateway(self) -> None:
        """Re-read the gateway's enclave address (GetGatewayInfo)."""
        try:
            info = await self._stub.GetGatewayInfo(
                gateway_pb2.GetGatewayInfoRequest(), timeout=self._timeout
            )
        except (NoxError, grpc.aio.AioRpcError):
            return
        address = bytes(info.node.enclave_address)
        if address:
            self._gateway = address

    async def _store(
        self,
        task_id: bytes,
        executions: Sequence[gateway_pb2.SignedExecution],
        gateway: bytes,
    ) -> gateway_pb2.StoreResultsResponsePayload:
        payload = gateway_pb2.StoreResultsPayload(task_id=task_id, executions=list(executions))
        now = int(self._clock())
        envelope = sign_envelope(
            self._key, payload, domain=self._domain, audience=gateway, now=now, ttl=self._ttl
        )
        try:
            response = await self._stub.StoreResults(
                gateway_pb2.StoreResultsRequest(envelope=envelope), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as err:  # a channel without typed-error interceptors
            raise_typed(err)
        now = int(self._clock())

        def authorize(signer: bytes) -> None:
            self._directory.require(signer, common_pb2.ROLE_GATEWAY, now)

        verified = verify_envelope(
            response.envelope,
            gateway_pb2.StoreResultsResponsePayload,
            domain=self._domain,
            audience=self._key.address,
            now=now,
            replay=self._replay,
            expected_signer=gateway,
            authorize=authorize,
        )
        answer = verified.message
        if answer.request_hash != keccak256(envelope.payload) or answer.task_id != task_id:
            raise InvalidArgument("gateway answer does not match the StoreResults request")
        return answer
