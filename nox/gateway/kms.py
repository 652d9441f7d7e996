"""The gateway's side of `KmsService.Delegate`: one batch delegated by t of the n KMS nodes.

The gateway serializes one `DelegatePayload` (requester key, targets, authorization) and
asks exactly `want` nodes (default t): every node asked does the whole elliptic-curve work
(three envelope verifications; a partial, a DLEQ proof and a sealing per target), so asking
all n to keep t answers would waste (n - t)/n of the KMS's CPU. Each
envelope is signed for the node it is addressed to, only when that node is asked. An
answer is kept when it verifies: a registered KMS signer, the gateway as audience, the
payload's request hash, the key epoch, one delegation per target in order
(`nox.kms.client.collect_partials`). Another node is asked at once for every node that
fails, answers something that does not verify (logged with its index) or times out; and all
the remaining ones after `hedge_after` seconds without enough answers (a stalled node costs
latency, not availability). Nodes that failed recently are asked last; the others in
rotation, so the load spreads over the nodes. The partials themselves are sealed to the
requester, so only the requester can check their DLEQ proofs; the gateway passes the
envelopes through unchanged. Fewer than t valid answers once every node was asked and
answered (or timed out) raise KMS_QUORUM_NOT_REACHED naming the failed nodes. A node that
fails is asked for its enclave address again (`KmsNodeEndpoint.rediscover`): after a restart it
has a new key and a new registration, and the gateway addresses it from the next request on,
once the registry shows the new address as an active KMS enclave.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import grpc

from nox.crypto.delegation import RequesterKeyKind
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey
from nox.crypto.threshold import ThresholdPublicKey
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.errors import InvalidArgument, NoxError
from nox.gateway.context import ROLE_KMS, Delegations, NodeDirectory
from nox.kms.client import collect_partials
from nox.kms.wire import requester_key_from_proto
from nox.rpc.logging import get_logger
from nox.v1 import common_pb2, decryption_pb2, kms_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

DelegateCall = Callable[[kms_pb2.DelegateRequest], Awaitable[kms_pb2.DelegateResponse]]
"""One node's Delegate: a gRPC stub method (`stub.Delegate`) or an in-process adapter."""


@dataclass(frozen=True)
class KmsNodeEndpoint:
    """One KMS node as the gateway reaches it."""

    index: int
    """Share index i (1..n)."""
    address: bytes
    """The node's enclave address: the audience of the gateway's requests."""
    call: DelegateCall
    rediscover: Callable[[], Awaitable[bytes]] | None = None
    """Asks the node for its current enclave address (its public GetPublicKey): a restarted
    node has a new enclave key, and refuses requests addressed to the old one."""


FAILURE_MEMORY_SECONDS = 30.0
"""How long a node that failed is asked after the others."""


def _now() -> int:
    return int(time.time())


class KmsFanout:
    """Delegate batches to t of n KMS nodes (see the module docstring)."""

    def __init__(
        self,
        nodes: Sequence[KmsNodeEndpoint],
        *,
        key: EnclaveKey,
        domain: Domain,
        public: ThresholdPublicKey,
        directory: NodeDirectory,
        clock: Callable[[], int] = _now,
        timeout: float = 10.0,
        extra_responses: int = 0,
        request_ttl: int = 60,
        hedge_after: float | None = None,
    ) -> None:
        if len(nodes) < public.threshold:
            raise InvalidArgument(f"{len(nodes)} KMS nodes for threshold {public.threshold}")
        if len({n.address for n in nodes}) != len(nodes):
            raise InvalidArgument("two KMS endpoints have the same address")
        self._nodes = tuple(nodes)
        self._key = key
        self._domain = domain
        self._public = public
        self._directory = directory
        self._clock = clock
        self._timeout = timeout
        self._extra = max(0, extra_responses)
        self._ttl = request_ttl
        # Seconds before the nodes not asked yet are asked as well (a hedge against a node
        # that is slow without failing); a quarter of the timeout unless given.
        self._hedge_after = timeout / 4 if hedge_after is None else max(0.0, hedge_after)
        self._turn = 0
        self._failed_at: dict[int, float] = {}  # node index -> event-loop time of a failure
        self._log = get_logger("nox.gateway.kms")

    @property
    def public(self) -> ThresholdPublicKey:
        """The published threshold key set."""
        return self._public

    async def delegate(
        self,
        *,
        requester_key: common_pb2.RequesterKey,
        targets: Sequence[tuple[bytes, bytes]],
        bindings: Sequence[common_pb2.HandleBinding] = (),
        runner_request: SignedEnvelope | None = None,
        user_authorization: decryption_pb2.DecryptionAuthorization | None = None,
        public_decryption: bool = False,
        tag_key: kms_pb2.TagKeyAuthorization | None = None,
        want: int | None = None,
    ) -> Delegations:
        """Delegate the (handle, K) `targets`, each with its producer binding from
        `bindings`, to `requester_key`; see the module docstring."""
        kind = RequesterKeyKind(requester_key_from_proto(requester_key).kind)
        payload = kms_pb2.DelegatePayload(
            epoch=self._public.epoch,
            requester_key=requester_key,
            targets=[
                kms_pb2.DelegationTarget(handle=h, ephemeral_public_key=k) for h, k in targets
            ],
        )
        if bindings:
            if len(bindings) != len(targets):
                raise InvalidArgument("one binding per target is needed")
            for target, binding in zip(payload.targets, bindings, strict=True):
                target.binding.CopyFrom(binding)
        chosen = sum(
            (
                runner_request is not None,
                user_authorization is not None,
                public_decryption,
                tag_key is not None,
            )
        )
        if chosen != 1:
            raise InvalidArgument("exactly one authorization is needed")
        if runner_request is not None:
            payload.runner_request.CopyFrom(runner_request)
        elif user_authorization is not None:
            payload.user_authorization.CopyFrom(user_authorization)
        elif tag_key is not None:
            payload.tag_key.CopyFrom(tag_key)
        else:
            payload.public_decryption.SetInParent()
        body = payload.SerializeToString()
        rhash = keccak256(body)
        now = self._clock()
        want_n = min(len(self._nodes), want or self._public.threshold + self._extra)
        queue = list(self._order())
        valid: list[SignedEnvelope] = []
        failed: list[int] = []
        pending: dict[asyncio.Future[SignedEnvelope | None], KmsNodeEndpoint] = {}

        def ask_next() -> None:
            node = queue.pop(0)
            env = sign_envelope(
                self._key, payload, domain=self._domain, audience=node.address, now=now,
                ttl=self._ttl,
            )  # fmt: skip
            if env.payload != body:  # serialization is deterministic for one message object
                raise InvalidArgument("payload serialization is not stable")
            request = kms_pb2.DelegateRequest(envelope=env)
            pending[asyncio.ensure_future(self._ask(node, request, targets, kind, rhash))] = node

        loop = asyncio.get_running_loop()
        hedge_at = loop.time() + self._hedge_after
        try:
            while len(valid) < want_n:
                # as many in flight as answers still missing, while unasked nodes remain
                while queue and len(pending) < want_n - len(valid):
                    ask_next()
                if not pending:
                    break
                wait = max(0.0, hedge_at - loop.time()) if queue else None
                done, _ = await asyncio.wait(
                    pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # slow answers: ask every remaining node too
                    while queue:
                        ask_next()
                    continue
                for task in done:
                    node = pending.pop(task)
                    envelope = task.result()
                    if envelope is None:
                        failed.append(node.index)
                        if node in self._nodes:  # not re-addressed after a restart meanwhile
                            self._failed_at[node.index] = loop.time()
                    else:
                        valid.append(envelope)
                        self._failed_at.pop(node.index, None)
        finally:
            for task in pending:
                task.cancel()
        if len(valid) < self._public.threshold:
            raise QuorumNotReached(self._public.threshold, len(valid), sorted(failed))
        return Delegations(
            envelopes=tuple(valid[:want_n]),
            request_hash=rhash,
            threshold=self._public.threshold,
            epoch=self._public.epoch,
        )

    def _order(self) -> list[KmsNodeEndpoint]:
        """Every node, in the order to ask them: rotating (the load spreads), nodes that
        failed within `FAILURE_MEMORY_SECONDS` last (a down node does not cost every request
        a failed call first)."""
        self._turn = (self._turn + 1) % len(self._nodes)
        rotated = self._nodes[self._turn :] + self._nodes[: self._turn]
        since = asyncio.get_running_loop().time() - FAILURE_MEMORY_SECONDS
        return sorted(rotated, key=lambda n: self._failed_at.get(n.index, since) > since)

    async def _rediscover(self, node: KmsNodeEndpoint) -> None:
        """Re-learn a failed node's enclave address; adopt it once the registry shows it as
        an active KMS enclave (answers stay checked as from a registered KMS signer)."""
        if node.rediscover is None:
            return
        try:
            address = await asyncio.wait_for(node.rediscover(), self._timeout)
        except (NoxError, grpc.aio.AioRpcError, TimeoutError):
            return
        if address == node.address or any(n.address == address for n in self._nodes):
            return
        try:
            await asyncio.to_thread(self._directory.require, address, ROLE_KMS, self._clock())
        except NoxError as exc:
            self._log.warning(
                "gateway.kms_node_unregistered", node_index=node.index, reason=exc.reason
            )
            return
        self._nodes = tuple(
            replace(n, address=address) if n.index == node.index else n for n in self._nodes
        )
        self._log.info(
            "gateway.kms_node_changed", node_index=node.index, address="0x" + address.hex()
        )

    async def _ask(
        self,
        node: KmsNodeEndpoint,
        request: kms_pb2.DelegateRequest,
        targets: Sequence[tuple[bytes, bytes]],
        kind: RequesterKeyKind,
        rhash: bytes,
    ) -> SignedEnvelope | None:
        """One node's verified answer, or None (logged) when it failed or did not verify."""
        try:
            response = await asyncio.wait_for(node.call(request), self._timeout)
        except (NoxError, grpc.aio.AioRpcError, TimeoutError) as exc:
            self._log.warning(
                "gateway.kms_node_failed", node_index=node.index, error=type(exc).__name__,
                reason=getattr(exc, "reason", ""),
            )  # fmt: skip
            if not isinstance(exc, TimeoutError):
                await self._rediscover(node)
            return None
        envelope = response.envelope
        collected = await asyncio.to_thread(
            collect_partials,
            [envelope],
            targets=targets,
            public=self._public,
            requester_kind=kind,
            domain=self._domain,
            audience=self._key.address,
            registry=self._directory,
            now=self._clock(),
            request_hash=rhash,
        )
        if collected.rejected:
            bad = collected.rejected[0]
            self._log.warning("gateway.kms_answer_rejected", node_index=node.index, why=bad.why)
            return None
        return envelope
