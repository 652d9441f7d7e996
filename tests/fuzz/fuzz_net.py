"""The network the campaign drives: a GatewayService over a real SQLite store and a real
2-of-3 KmsService (three KmsServicers), all over real gRPC on free ports, built with the
gateway tests' own builders (tests/gateway/service/gateway_servers.py, not edited here).

The servers run on a `LoopThread`, so the Hypothesis tests are synchronous and call them
with a blocking channel that sends raw bytes. Registry and ACL are the gateway tests'
dictionaries (the campaign tests the services' input handling, not the chain views).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway" / "service"))

from fuzz_support import DOCUMENTED_CODES, LoopThread, Outcomes, Signers, StoreSnapshot
from gateway_servers import GatewayNet, Kms, start_gateway, start_kms, stop_gateway, stop_kms
from gateway_support import (
    DOMAIN,
    GATEWAY,
    NOW,
    ORCHESTRATOR,
    RUNNER,
    UINT64,
    Clock,
    FakeAcl,
    FakeRegistry,
    authorization,
    encrypt_request,
    result_handle,
    u64,
)

from nox.crypto import ecies
from nox.crypto.delegation import RequesterKey
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.gateway.limits import RateLimit
from nox.kms.wire import requester_key_to_proto
from nox.v1 import gateway_pb2, kms_pb2

GW = "/nox.v1.GatewayService/"
KMS = "/nox.v1.KmsService/"


@dataclass
class FuzzNet:
    """The running servers, blocking channels to them, the actors and valid seed requests."""

    loop: LoopThread
    gw: GatewayNet
    kms: Kms
    channel: grpc.Channel
    kms_channel: grpc.Channel
    outcomes: Outcomes
    stored: bytes  # a handle EncryptInput stored
    public: bytes  # a stored handle the ACL marks publicly decryptable
    user: EnclaveKey  # a viewer of `stored` and `public`
    snapshot: StoreSnapshot

    @property
    def clock(self) -> Clock:
        return self.gw.clock

    @property
    def registry(self) -> FakeRegistry:
        return self.gw.registry

    def signers(self, expected: EnclaveKey, audience: bytes) -> Signers:
        actors = self.gw.actors
        others = (actors.orchestrator, actors.runner, self.gw.key, *self.kms.keys)
        return Signers(
            DOMAIN, audience, self.clock, expected, tuple(k for k in others if k is not expected)
        )

    def call(
        self,
        method: str,
        request: bytes,
        allowed: frozenset[grpc.StatusCode] = DOCUMENTED_CODES,
    ) -> grpc.RpcError | None:
        channel = self.kms_channel if method.startswith(KMS) else self.channel
        return self.outcomes.call(channel, method, request, allowed=allowed)

    # ------------------------------------------------------------------ valid requests

    def encrypt(self, value: int) -> bytes:
        call = self.channel.unary_unary(GW + "EncryptInput")
        raw = call(
            encrypt_request(self.gw.key.public_key, plaintext=u64(value)).SerializeToString(),
            timeout=30,
        )
        return bytes(gateway_pb2.EncryptInputResponse.FromString(raw).handle)

    def good(self, method: str) -> bytes:
        """A fresh valid request of `method` (fresh nonces, fresh task ids)."""
        actors = self.gw.actors
        name = method.rsplit("/", 1)[1]
        if method.startswith(GW):
            if name == "GetGatewayInfo":
                return gateway_pb2.GetGatewayInfoRequest().SerializeToString()
            if name == "EncryptInput":
                return encrypt_request(self.gw.key.public_key, plaintext=u64(7)).SerializeToString()
            if name == "GetHandleStatus":
                return gateway_pb2.GetHandleStatusRequest(handles=[self.stored]).SerializeToString()
            if name == "PublicDecrypt":
                return gateway_pb2.PublicDecryptRequest(handles=[self.public]).SerializeToString()
            if name == "Decrypt":
                requester = RequesterKey.generate_secp256k1()
                auth = authorization(self.user, requester, now=self.clock.now)
                request = gateway_pb2.DecryptRequest(authorization=auth, handles=[self.stored])
                return request.SerializeToString()
            task = result_handle(UINT64)  # 32 random bytes with the right shape
            if name == "GetOperands":
                assignment = actors.assignment(task, [self.stored], [result_handle(UINT64)])
                requester = RequesterKey.generate_secp256k1()
                request = actors.operands_request(
                    assignment, [self.stored], requester, task_id=task
                )
                return request.SerializeToString()
            if name == "StoreResults":
                out = result_handle(UINT64)
                assignment = actors.assignment(task, [self.stored], [out])
                kms_pk = self.kms.dealing.public.public_key
                execution = actors.execution(assignment, task, [(out, u64(9))], kms_pk)
                return actors.store_request(task, [execution]).SerializeToString()
        if method == KMS + "GetPublicKey":
            return kms_pb2.GetPublicKeyRequest().SerializeToString()
        if method == KMS + "Delegate":
            return self.delegate_request().SerializeToString()
        raise AssertionError(f"no valid request for {method}")

    def delegate_request(self) -> kms_pb2.DelegateRequest:
        """A gateway-signed public-decryption delegation to KMS node 1."""
        ct = ecies.encrypt(self.kms.dealing.public.public_key, u64(5), self.public)
        payload = kms_pb2.DelegatePayload(
            epoch=self.kms.dealing.public.epoch,
            requester_key=requester_key_to_proto(RequesterKey.generate_secp256k1().public),
            targets=[
                kms_pb2.DelegationTarget(
                    handle=self.public, ephemeral_public_key=ct.ephemeral_public_key
                )
            ],
            public_decryption=kms_pb2.PublicDecryptionAuthorization(),
        )
        env = sign_envelope(
            self.gw.key, payload, domain=DOMAIN, audience=self.kms.keys[0].address,
            now=self.clock.now,
        )  # fmt: skip
        return kms_pb2.DelegateRequest(envelope=env)

    def assert_serves(self, method: str) -> None:
        """The server still answers a good call of `method` (and the public info call)."""
        for m in (method, GW + "GetGatewayInfo", KMS + "GetPublicKey"):
            channel = self.kms_channel if m.startswith(KMS) else self.channel
            channel.unary_unary(m)(self.good(m), timeout=30)


def start(loop: LoopThread, store_url: str) -> FuzzNet:
    clock, registry, acl = Clock(NOW), FakeRegistry(), FakeAcl()
    kms = loop.run(start_kms(registry, clock, acl.is_publicly_decryptable))
    gw = loop.run(
        start_gateway(
            store_url=store_url,
            clock=clock,
            registry=registry,
            acl=acl,
            kms=kms,
            key=registry.enrol(GATEWAY),
            orchestrator=registry.enrol(ORCHESTRATOR),
            runner=registry.enrol(RUNNER),
            # the campaign sends thousands of public calls at one frozen instant
            rate_limit=RateLimit(rate=1e9, burst=10**9),
        )
    )
    net = FuzzNet(
        loop=loop,
        gw=gw,
        kms=kms,
        channel=grpc.insecure_channel(gw.server.target),
        kms_channel=grpc.insecure_channel(kms.servers[0].target),
        outcomes=Outcomes(),
        stored=b"",
        public=b"",
        user=EnclaveKey.generate(),
        snapshot=StoreSnapshot(store_url),
    )
    net.stored, net.public = net.encrypt(42), net.encrypt(43)
    acl.viewers |= {(net.stored, net.user.address), (net.public, net.user.address)}
    acl.public.add(net.public)
    return net


def stop(net: FuzzNet) -> None:
    net.snapshot.close()
    net.channel.close()
    net.kms_channel.close()
    net.loop.run(stop_gateway(net.gw))
    net.loop.run(stop_kms(net.kms))
