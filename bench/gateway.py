"""GatewayService through real gRPC: EncryptInput/s, GetOperands and handle lookup latency.

    .venv/bin/python bench/gateway.py [--handles 100000] [--backend postgresql|sqlite]
                                      [--pg-url URL] [--calls 300] [--concurrency 16] [--json]

Set-up: a gateway server and a real 2-of-3 KMS (three KmsService servers) on this machine,
the store in a fresh database (a temporary PostgreSQL schema by default, dropped
afterwards), first filled with `--handles` stored handles by bulk inserts
(`--handles 1000000` gives the issue's figure; a few minutes on PostgreSQL). The registry is
an in-memory table (what is measured is the gateway, not the chain).

Measured, each over `--calls` calls:
- EncryptInput/s, one call at a time and with `--concurrency` calls in flight (validation,
  ECIES, insert, input-proof signature, gRPC);
- GetOperands latency p50/p99 for 1 and 3 operands (envelope and assignment verification,
  replay record, lookup, a signed Delegate to each of the 3 KMS nodes, t = 2 answers
  verified, the signed answer);
- handle lookup latency p50/p99 among all stored handles: the store's `get` of one random
  handle, and a GetHandleStatus RPC of one and of 256 handles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nox.crypto.delegation import RequesterKey
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, SqlReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.crypto.threshold import deal
from nox.errors import PermissionDenied
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleRecord, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.kms.wire import requester_key_to_proto
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import gateway_pb2, gateway_pb2_grpc, kms_pb2_grpc
from nox.v1.task_pb2 import TaskAssignment

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHAIN_ID = 31337
UINT64 = 11
CHUNK = 4096
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=bytes.fromhex("11" * 20))
ORCHESTRATOR, RUNNER, GATEWAY, KMS = 1, 2, 3, 4


class Registry:
    """address -> role, answering like RegistryView.require for active nodes."""

    def __init__(self) -> None:
        self.roles: dict[bytes, int] = {}

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        if self.roles.get(address) != role:
            raise PermissionDenied("not registered in this role")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        self.require(address, role, now)

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.roles[key.address] = role
        return key


class Acl:
    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return False

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return False


@contextmanager
def database(backend: str, pg_url: str) -> Iterator[str]:
    """A URL to an empty database of `backend`, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        return
    schema = f"nox_bench_gw_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def random_handle(rng: random.Random) -> bytes:
    return rng.randbytes(26) + CHAIN_ID.to_bytes(4, "big") + bytes([UINT64, 0])


def fill(store: HandleStore, count: int, rng: random.Random) -> list[bytes]:
    """Bulk-insert `count` random records; return a sample of their handles for lookups."""
    sample: list[bytes] = []
    for start in range(0, count, CHUNK):
        records = [
            HandleRecord(
                handle=random_handle(rng),
                ciphertext=rng.randbytes(24),
                ephemeral_public_key=b"\x02" + rng.randbytes(32),
                nonce=rng.randbytes(12),
                value_tag=rng.randbytes(32),
            )
            for _ in range(min(CHUNK, count - start))
        ]
        store.put_inputs(records)
        sample.extend(r.handle for r in records[:16])
    return sample


def pct(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def latencies(fn: Callable[[], Awaitable[object]], count: int) -> list[float]:
    for _ in range(min(10, count)):
        await fn()
    out = []
    for _ in range(count):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(samples, 50), 3), "p99_ms": round(pct(samples, 99), 3)}


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    registry = Registry()
    dealing = deal(2, 3)
    kms_keys = [registry.enrol(KMS) for _ in range(3)]
    gateway = registry.enrol(GATEWAY)
    orchestrator, runner = registry.enrol(ORCHESTRATOR), registry.enrol(RUNNER)
    servers, channels, endpoints = [], [], []
    for i, (share, key) in enumerate(zip(dealing.shares, kms_keys, strict=True), start=1):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=DOMAIN,
            registry=registry,
            replay=MemoryReplayCache(),
        )
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channel = create_channel(server.target)
        channels.append(channel)
        endpoints.append(
            KmsNodeEndpoint(i, key.address, kms_pb2_grpc.KmsServiceStub(channel).Delegate)
        )
    sync_store = HandleStore.open(StoreSettings(url=url, pool_size=8))
    started = time.perf_counter()
    sample = await asyncio.to_thread(fill, sync_store, args.handles, rng)
    fill_seconds = time.perf_counter() - started
    store = AsyncHandleStore(sync_store)
    ctx = GatewayContext(
        key=gateway,
        deployment=Deployment(CHAIN_ID, DOMAIN.verifying_contract, bytes(range(20))),
        store=store,
        directory=registry,
        acl=Acl(),
        kms=KmsFanout(
            endpoints, key=gateway, domain=DOMAIN, public=dealing.public, directory=registry
        ),
        replay=SqlReplayCache(store.engine),
    )
    await derive_tag_key(ctx)
    server, _ = create_gateway_server(
        ctx,
        server_settings=ServerSettings(graceful_shutdown_seconds=0),
        rate_limit=RateLimit(1e9, 10**9),
    )
    await server.start()
    servers.append(server)
    channel = create_channel(server.target)
    channels.append(channel)
    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    try:
        owner, app = os.urandom(20), os.urandom(20)

        def encrypt_call() -> Awaitable[object]:
            return stub.EncryptInput(  # sealed by the client, as the SDK does
                sealed_input_request(
                    gateway.public_key, rng.randbytes(8), chain_id=CHAIN_ID, type_code=UINT64,
                    owner=owner, application=app,
                )
            )  # fmt: skip

        sequential = await latencies(encrypt_call, args.calls)
        start = time.perf_counter()
        done = 0
        while done < args.calls:
            await asyncio.gather(*(encrypt_call() for _ in range(args.concurrency)))
            done += args.concurrency
        concurrent_rate = done / (time.perf_counter() - start)

        inputs = [
            (await encrypt_call()).handle  # type: ignore[attr-defined]
            for _ in range(3)
        ]
        task_id = os.urandom(32)
        now = int(time.time())
        assignment = sign_envelope(
            orchestrator,
            TaskAssignment(task_id=task_id, input_handles=inputs, runner_address=runner.address,
                           assigned_at=now, lease_expires_at=now + 3600, attempt=1),
            domain=DOMAIN, audience=runner.address, now=now, ttl=3600,
        )  # fmt: skip
        requester = requester_key_to_proto(RequesterKey.generate_secp256k1().public)

        def operands_call(count: int) -> Callable[[], Awaitable[object]]:
            def call() -> Awaitable[object]:
                payload = gateway_pb2.GetOperandsPayload(
                    task_id=task_id, assignment=assignment, requester_key=requester,
                    handles=inputs[:count],
                )  # fmt: skip
                env = sign_envelope(
                    runner, payload, domain=DOMAIN, audience=gateway.address, now=int(time.time())
                )
                return stub.GetOperands(gateway_pb2.GetOperandsRequest(envelope=env))

            return call

        operands_1 = await latencies(operands_call(1), args.calls)
        operands_3 = await latencies(operands_call(3), args.calls)

        def store_get() -> Awaitable[object]:
            return store.get([rng.choice(sample)])

        def status_call(count: int) -> Callable[[], Awaitable[object]]:
            def call() -> Awaitable[object]:
                handles = list({rng.choice(sample) for _ in range(count)})
                return stub.GetHandleStatus(gateway_pb2.GetHandleStatusRequest(handles=handles))

            return call

        lookups = await latencies(store_get, args.calls * 3)
        status_1 = await latencies(status_call(1), args.calls * 3)
        status_256 = await latencies(status_call(256), args.calls)
        stored = await store.count()
    finally:
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
        await store.close()
    return {
        "backend": args.backend,
        "stored_handles": stored,
        "fill_seconds": round(fill_seconds, 1),
        "encrypt_input_per_s_sequential": round(1000 / statistics.mean(sequential), 1),
        "encrypt_input_latency": summary(sequential),
        f"encrypt_input_per_s_concurrency_{args.concurrency}": round(concurrent_rate, 1),
        "get_operands_1_latency": summary(operands_1),
        "get_operands_3_latency": summary(operands_3),
        "store_get_1_latency": summary(lookups),
        "get_handle_status_1_latency": summary(status_1),
        "get_handle_status_256_latency": summary(status_256),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handles", type=int, default=100_000, help="handles stored first")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--pg-url", default=os.environ.get("NOX_BENCH_POSTGRES_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="EncryptInput calls in flight")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with database(args.backend, args.pg_url) as url:
        result = asyncio.run(run(args, url))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:40} {value}")


if __name__ == "__main__":
    main()
