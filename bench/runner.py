"""Runner benchmark: engine ops/s per op and width, and one confidential transfer's time split.

    .venv/bin/python bench/runner.py [--seconds 0.05] [--tasks 30] [--json]

Part 1 times `nox.compute.execute` (the pure engine, operands already decoded) for every
operator at every uintN width it takes (bool for select/eq/ne), plus intN at 64 and 256 bits.

Part 2 runs confidential transfers (3 inputs, 3 outputs, uint64) through the runner's
`TaskExecutor` against a real gateway (`nox.gateway`, SQLite store, real gRPC) and a real
2-of-3 KMS (three `KmsServicer` gRPC servers), all on this machine; the registry is a
dictionary (not what is measured). Per task it reports where the runner's time goes:
- crypto: the runner's own cryptography (sign GetOperands, verify the gateway's and three
  KMS envelopes, open and DLEQ-verify partials, combine, AES-GCM decrypt, ECIES-encrypt
  the outputs, value tags);
- compute: the ops in the engine;
- rpc: the GetOperands round trip as the runner sees it (the gateway's checks and store
  read, the KMS fan-out with its proofs and sealing, the network stack).
Signing the SubmitResult envelope is timed separately ("submit sign").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nox.compute import SPECS, Operator, Value, execute
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.crypto.sealing import sealed_input_request
from nox.crypto.threshold import deal
from nox.errors import PermissionDenied
from nox.gateway.context import Deployment, GatewayContext
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit
from nox.gateway.server import create_gateway_server
from nox.gateway.store import AsyncHandleStore, HandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.handles import BOOL, ValueType, int_, result_handle, uint
from nox.kms.keys import LoadedShare
from nox.kms.service import SERVICE_NAME as KMS_SERVICE
from nox.kms.service import KmsServicer
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.runner.executor import ExecutorConfig, TaskExecutor, task_id_for
from nox.runner.tagkey import open_tag_key_response, tag_key_request
from nox.v1 import gateway_pb2_grpc, kms_pb2_grpc, task_pb2

CHAIN_ID = 31337
REGISTRY = bytes.fromhex("11" * 20)
COMPUTE = bytes.fromhex("22" * 20)
ACL = bytes.fromhex("33" * 20)
CALLER = bytes.fromhex("44" * 20)
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=REGISTRY)
WIDTHS = (8, 16, 32, 64, 128, 256)

# ---------------------------------------------------------------------------- part 1: engine


def _rate(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(50):
        fn()
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn()
        count += 100
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def _operands(op: Operator, vt: ValueType) -> list[Value]:
    rand = int.from_bytes(os.urandom(32), "big")
    lo, hi = vt.min_value, vt.max_value

    def pick(i: int) -> Value:
        span = hi - lo + 1
        return Value.of(vt, lo + (rand >> (i * 7)) % span)

    arity = SPECS[op].arity
    if op is Operator.SELECT:
        return [Value.of(BOOL, True), pick(1), pick(2)]
    if op in (Operator.DIV, Operator.SAFE_DIV):
        return [pick(0), Value.of(vt, 3)]
    return [pick(i) for i in range(arity)]


def engine_table(seconds: float) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    columns: list[tuple[str, ValueType]] = [("bool", BOOL)]
    columns += [(f"u{w}", uint(w)) for w in WIDTHS]
    columns += [("i64", int_(64)), ("i256", int_(256))]
    for op in Operator:
        row: dict[str, float] = {}
        for name, vt in columns:
            if vt.kind not in SPECS[op].kinds:
                continue
            operands = _operands(op, vt)
            row[name] = _rate(functools.partial(execute, op, operands), seconds)
        table[op.name] = row
    return table


def print_engine(table: dict[str, dict[str, float]]) -> None:
    names = ["bool", *(f"u{w}" for w in WIDTHS), "i64", "i256"]
    print("engine: nox.compute.execute, thousands of ops per second (one core)")
    print(f"{'operator':<24}" + "".join(f"{n:>8}" for n in names))
    for op, row in table.items():
        cells = "".join(f"{row[n] / 1000:>8.0f}" if n in row else f"{'-':>8}" for n in names)
        print(f"{op:<24}{cells}")


# ---------------------------------------------------------------------------- part 2: one task


@dataclass
class Directory:
    roles: dict[bytes, int] = field(default_factory=dict)

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


async def task_split(tasks: int, workdir: Path) -> dict[str, float]:
    directory = Directory()
    dealing = deal(2, 3)
    kms_keys = [directory.enrol(4) for _ in range(3)]
    servers, channels = [], []
    for share, key in zip(dealing.shares, kms_keys, strict=True):
        servicer = KmsServicer(
            share=LoadedShare(share, dealing.public),
            enclave_key=key,
            domain=DOMAIN,
            registry=directory,
            replay=MemoryReplayCache(),
        )
        spec = ServiceSpec(KMS_SERVICE, kms_pb2_grpc.add_KmsServiceServicer_to_server, servicer)
        server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
        await server.start()
        servers.append(server)
        channels.append(create_channel(server.target))
    gateway_key = directory.enrol(3)
    orchestrator, ingestor, runner = directory.enrol(1), directory.enrol(5), directory.enrol(2)
    store = AsyncHandleStore(
        HandleStore.open(StoreSettings(url=f"sqlite:///{workdir / 'gateway.sqlite3'}"))
    )
    endpoints = [
        KmsNodeEndpoint(index=i, address=k.address, call=kms_pb2_grpc.KmsServiceStub(c).Delegate)
        for i, (k, c) in enumerate(zip(kms_keys, channels, strict=True), 1)
    ]
    ctx = GatewayContext(
        key=gateway_key,
        deployment=Deployment(CHAIN_ID, REGISTRY, COMPUTE, ACL),
        store=store,
        directory=directory,
        acl=None,  # type: ignore[arg-type]  # no user decryption here
        kms=KmsFanout(
            endpoints, key=gateway_key, domain=DOMAIN, public=dealing.public, directory=directory
        ),
        replay=MemoryReplayCache(),
    )
    await derive_tag_key(ctx)
    gateway, _ = create_gateway_server(
        ctx,
        server_settings=ServerSettings(graceful_shutdown_seconds=0),
        rate_limit=RateLimit(rate=1e6, burst=1_000_000),
    )
    await gateway.start()
    gateway_channel = create_channel(gateway.target)
    stub = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
    sync_channel = grpc.insecure_channel(gateway.target)
    sync_stub = gateway_pb2_grpc.GatewayServiceStub(sync_channel)
    executor = TaskExecutor(
        key=runner,
        config=ExecutorConfig(domain=DOMAIN, kms_public=dealing.public, compute_address=COMPUTE),
        directory=directory,
        replay=MemoryReplayCache(),
    )
    # Once per runner start, as the agent does: the value-tag key through the gateway.
    tag_request, tag_requester = tag_key_request(
        executor, gateway=gateway_key.address, now=int(time.time())
    )
    open_tag_key_response(
        executor, await stub.GetTagKey(tag_request), requester_key=tag_requester,
        gateway=gateway_key.address, now=int(time.time()),
    )  # fmt: skip
    vt = uint(64)
    rows: dict[str, list[float]] = {k: [] for k in ("crypto", "compute", "rpc", "sign", "total")}
    try:
        for n in range(tasks):
            inputs = []
            for value in (30 + n, 1000, 5):
                answer = await stub.EncryptInput(
                    sealed_input_request(
                        gateway_key.public_key,
                        value.to_bytes(8, "big"),
                        chain_id=CHAIN_ID,
                        type_code=vt.code,
                        owner=CALLER,
                        application=CALLER,
                    )
                )
                inputs.append(bytes(answer.handle))
            now = int(time.time())
            outputs = [
                result_handle(16, inputs, COMPUTE, CALLER, now, i, CHAIN_ID, vt).to_bytes()
                for i in range(3)
            ]
            tx = task_pb2.TransactionMessage(
                chain_id=CHAIN_ID, block_number=1, block_hash=os.urandom(32),
                block_timestamp=now, transaction_hash=os.urandom(32), compute_address=COMPUTE,
                operations=[task_pb2.Operation(log_index=0, operator=16, caller=CALLER,
                                               input_handles=inputs, output_handles=outputs)],
            )  # fmt: skip
            message = task_pb2.TaskAssignment(
                task_id=task_id_for(CHAIN_ID, tx.transaction_hash),
                transaction=sign_envelope(ingestor, tx, domain=DOMAIN, audience=COMPUTE, now=now,
                                          ttl=3600),
                input_handles=inputs, output_handles=outputs, runner_address=runner.address,
                assigned_at=now, lease_expires_at=now + 60, attempt=1, redundancy=1,
                limits=task_pb2.TaskLimits(max_operations=8, max_input_handles=8,
                                           max_output_handles=8, max_ciphertext_bytes=4096,
                                           max_execution_seconds=60),
            )  # fmt: skip
            env = sign_envelope(orchestrator, message, domain=DOMAIN, audience=runner.address,
                                now=now, ttl=300)  # fmt: skip
            started = time.perf_counter()
            assignment = executor.open_assignment(env, now=now)
            opened = time.perf_counter() - started
            outcome = await asyncio.to_thread(
                executor.run_task,
                assignment,
                sync_stub.GetOperands,
                gateway=gateway_key.address,
                clock=lambda: int(time.time()),
            )
            if outcome.failed:
                raise SystemExit(f"task failed: {outcome.result.failure}")
            signed = time.perf_counter()
            executor.submit_request(outcome.result, orchestrator=orchestrator.address, now=now)
            sign = time.perf_counter() - signed
            t = outcome.timings
            rows["crypto"].append(t.crypto + opened)
            rows["compute"].append(t.compute)
            rows["rpc"].append(t.rpc)
            rows["sign"].append(sign)
            rows["total"].append(t.crypto + opened + t.compute + t.rpc + sign)
    finally:
        sync_channel.close()
        await gateway_channel.close(None)
        await gateway.stop(0)
        await store.close()
        for channel in channels:
            await channel.close(None)
        for server in servers:
            await server.stop(0)
    skip = 3 if tasks > 6 else 0  # warm-up (connections, caches)
    return {k: statistics.median(v[skip:]) for k, v in rows.items()}


def print_split(split: dict[str, float], tasks: int) -> None:
    total = split["total"]
    print()
    print(f"confidential transfer (3 in, 3 out, uint64), median of {tasks} tasks, ms per task")
    labels = {
        "crypto": "runner crypto (verify assignment, envelopes, DLEQ, combine, AES, ECIES)",
        "compute": "compute (engine)",
        "rpc": "rpc: GetOperands round trip (gateway + 2-of-3 KMS, local gRPC)",
        "sign": "submit sign (SubmitResult envelope)",
    }
    for key, label in labels.items():
        ms = split[key] * 1000
        print(f"  {ms:8.3f}  {100 * split[key] / total:5.1f}%  {label}")
    print(f"  {total * 1000:8.3f}  100.0%  total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.05, help="time per engine cell")
    parser.add_argument("--tasks", type=int, default=30, help="transfers to time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    table = engine_table(args.seconds)
    with tempfile.TemporaryDirectory(prefix="nox-bench-runner-") as tmp:
        split = asyncio.run(task_split(args.tasks, Path(tmp)))
    if args.json:
        print(json.dumps({"engine_ops_per_second": table, "task_split_seconds": split}))
        return 0
    print_engine(table)
    print_split(split, args.tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
