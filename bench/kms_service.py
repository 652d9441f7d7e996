"""KMS service throughput: whole Delegate requests through `KmsNode` and over gRPC.

    .venv/bin/python bench/kms_service.py [--seconds 1.0] [--json]

(`bench/kms.py` prints these rows too, in the same run as the bare curve operations.)

Per request the node verifies the gateway's envelope (one recovery), the relayed runner
request and task assignment (two more), checks the authorization, then per ciphertext key K
computes the partial, its DLEQ proof and the sealing (see bench/kms.py), and signs the
answer (one signature). Each K comes with its producer binding (one gateway signature per
target, as for inputs): the node recovers each on the first request and serves the later
ones from its cache of verified bindings, as for a handle read again. The registry here is a
static table (its cost is the chain layer's, cached) and the replay cache is in memory.
Requests are signed before the clock starts: the gateway's signing is not the node's work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from nox.crypto import ecies
from nox.crypto.binding import BoundRow, sign_bindings
from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.threshold import deal
from nox.kms.keys import LoadedShare
from nox.kms.node import KmsNode
from nox.kms.server import StaticDirectory
from nox.kms.service import SERVICE_NAME, KmsServicer
from nox.kms.wire import binding_to_proto, requester_key_to_proto
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import kms_pb2, kms_pb2_grpc
from nox.v1.gateway_pb2 import GetOperandsPayload
from nox.v1.task_pb2 import TaskAssignment

DOMAIN = Domain(chain_id=31337, verifying_contract=b"\x11" * 20)


class _Quiet:
    """A logger that drops events (a per-request log line is not what is measured)."""

    def info(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    warning = info


class _Setup:
    def __init__(self) -> None:
        dealing = deal(2, 3)
        self.public = dealing.public
        self.gateway, self.runner, self.orchestrator, self.kms = (
            EnclaveKey.generate() for _ in range(4)
        )
        directory = StaticDirectory(
            {self.gateway.address: 3, self.runner.address: 2, self.orchestrator.address: 1}
        )
        self.now = int(time.time())
        self.node = KmsNode(
            share=LoadedShare(dealing.shares[0], dealing.public),
            enclave_key=self.kms,
            domain=DOMAIN,
            registry=directory,
            replay=MemoryReplayCache(10_000_000),
            clock=lambda: self.now,
            logger=_Quiet(),
        )
        self.requester = RequesterKey.generate_secp256k1()

    def requests(self, batch: int, count: int) -> list[kms_pb2.DelegateRequest]:
        """`count` distinct signed requests for `batch` ciphertexts (one relayed runner request)."""
        handles = [os.urandom(32) for _ in range(batch)]
        cts = [ecies.encrypt(self.public.public_key, b"\x00" * 32, h) for h in handles]
        points = [ct.ephemeral_public_key for ct in cts]
        bindings = [
            binding_to_proto(
                sign_bindings(
                    self.gateway,
                    DOMAIN,
                    b"",
                    [BoundRow(h, ct.ephemeral_public_key, ct.nonce, ct.ciphertext, h, h)],
                )[0]
            )
            for h, ct in zip(handles, cts, strict=True)
        ]
        assignment = sign_envelope(
            self.orchestrator,
            TaskAssignment(
                task_id=b"\x01" * 32,
                input_handles=handles,
                runner_address=self.runner.address,
                lease_expires_at=self.now + 3000,
            ),
            domain=DOMAIN,
            audience=self.runner.address,
            now=self.now,
            ttl=3000,
        )
        runner_request = sign_envelope(
            self.runner,
            GetOperandsPayload(
                task_id=b"\x01" * 32,
                assignment=assignment,
                requester_key=requester_key_to_proto(self.requester.public),
                handles=handles,
            ),
            domain=DOMAIN,
            audience=self.gateway.address,
            now=self.now,
            ttl=3000,
        )
        payload = kms_pb2.DelegatePayload(
            epoch=0,
            requester_key=requester_key_to_proto(self.requester.public),
            targets=[
                kms_pb2.DelegationTarget(handle=h, ephemeral_public_key=k, binding=b)
                for h, k, b in zip(handles, points, bindings, strict=True)
            ],
            runner_request=runner_request,
        )
        return [
            kms_pb2.DelegateRequest(
                envelope=sign_envelope(
                    self.gateway, payload, domain=DOMAIN, audience=self.kms.address, now=self.now
                )
            )
            for _ in range(count)
        ]


def _timed(call: Callable[[kms_pb2.DelegateRequest], object], pool: Sequence[Any]) -> float:
    """Requests per second over the pool (after a short warm-up on its first items)."""
    for request in pool[:3]:
        call(request)
    start = time.perf_counter()
    for request in pool[3:]:
        call(request)
    return (len(pool) - 3) / (time.perf_counter() - start)


async def _grpc_rate(setup: _Setup, pool: Sequence[kms_pb2.DelegateRequest]) -> float:
    spec = ServiceSpec(
        SERVICE_NAME, kms_pb2_grpc.add_KmsServiceServicer_to_server, KmsServicer(setup.node)
    )
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    async with server, create_channel(server.target) as channel:
        stub = kms_pb2_grpc.KmsServiceStub(channel)
        for request in pool[:3]:
            await stub.Delegate(request)
        start = time.perf_counter()
        for request in pool[3:]:
            await stub.Delegate(request)
        return (len(pool) - 3) / (time.perf_counter() - start)


def measure_service(seconds: float = 1.0) -> dict[str, float]:
    """Ciphertext keys per second per node (one core), by path and batch size."""
    setup = _Setup()
    # Size the pools from a quick probe so each measurement lasts about `seconds`.
    probe = setup.requests(16, 5)
    per_request_16 = 1 / _timed(setup.node.delegate, probe)
    count_16 = max(10, int(seconds / per_request_16))
    count_1 = max(20, int(seconds / (per_request_16 / 6)))
    node_1 = _timed(setup.node.delegate, setup.requests(1, count_1))
    node_16 = _timed(setup.node.delegate, setup.requests(16, count_16))
    grpc_16 = asyncio.run(_grpc_rate(setup, setup.requests(16, count_16)))
    return {
        "node_batch1_keys_per_s": node_1,
        "node_batch16_keys_per_s": 16 * node_16,
        "grpc_batch16_keys_per_s": 16 * grpc_16,
        "grpc_batch16_requests_per_s": grpc_16,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure_service(args.seconds)
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"  {name:<34} {value:>10,.0f}/s")


if __name__ == "__main__":
    main()
