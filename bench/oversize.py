"""A gateway server process under concurrent oversized public requests: peak memory.

    .venv/bin/python bench/oversize.py [--concurrency 50] [--size-mib 15] [--rounds 2] [--json]

The issue's measurement (issue 14, point 5): 50 concurrent 15 MiB EncryptInput requests
were all refused, but only after parsing; the gateway went from 150 MB to a 2.5 GB peak.

Each side runs a real gateway server in its own process (`--serve`, started by this script;
an SQLite store in a temporary folder, an in-memory registry and ACL, no KMS needed since
every request is refused), then `--concurrency` well-formed EncryptInput requests carrying
`--size-mib` MiB of sealed plaintext are sent at once on as many channels, `--rounds`
times. The server's resident memory is read from /proc: idle (after a few GetGatewayInfo
calls) and its peak
(VmHWM) once every request was answered.

- `before`: the old limits: a 16 MiB transport cap and the size checked after parsing
  (`check_size` on the parsed message, 1 MiB public limit).
- `after`: this code: per-method limits on the raw bytes before parsing, and a transport cap
  equal to the largest method limit of the gateway (StoreResults, 4 MiB + 1 KiB), so a
  15 MiB request is refused by grpc C-core from the frame header, unbuffered.

`ratio` is after / before of the peak above idle; the issue's goal is under 300 MB above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import SqlReplayCache
from nox.crypto.threshold import ThresholdPublicKey, deal
from nox.errors import PermissionDenied, Unavailable
from nox.gateway.context import Deployment, GatewayContext, GatewayLimits
from nox.gateway.limits import RateLimit, RateLimiter, request_limits
from nox.gateway.service import SERVICE_NAME, GatewayServicer
from nox.gateway.store import AsyncHandleStore, StoreSettings
from nox.rpc import ServerSettings, ServiceSpec, create_server
from nox.rpc.client import ChannelSettings, create_channel
from nox.v1 import gateway_pb2, gateway_pb2_grpc

CHAIN_ID = 31337
BYTES_TYPE = 2
GOAL_MB = 300
MIB = 1024 * 1024
METHOD = "/nox.v1.GatewayService/EncryptInput"
INFO = "/nox.v1.GatewayService/GetGatewayInfo"


# ---- the server process (`--serve`) ------------------------------------------------------


class _Registry:
    def require(self, address: bytes, role: int, now: int) -> None:
        raise PermissionDenied("no node is registered in this benchmark")


class _Acl:
    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        return False

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        return False


class _NoKms:
    """Every request of this benchmark is refused before any KMS call."""

    def __init__(self, public: ThresholdPublicKey) -> None:
        self._public = public

    @property
    def public(self) -> ThresholdPublicKey:
        return self._public

    async def delegate(self, **kwargs: Any) -> Any:
        raise Unavailable("no KMS in this benchmark")


async def serve(old: bool, folder: Path) -> None:
    store = await AsyncHandleStore.open(StoreSettings(url=f"sqlite:///{folder / 'gw.sqlite3'}"))
    registry = bytes.fromhex("11" * 20)
    limits = (
        GatewayLimits(max_public_request_bytes=MIB, max_envelope_bytes=8 * MIB)
        if old
        else GatewayLimits()
    )
    ctx = GatewayContext(
        key=EnclaveKey.generate(),
        deployment=Deployment(CHAIN_ID, registry, bytes.fromhex("22" * 20)),
        store=store,
        directory=_Registry(),
        acl=_Acl(),
        kms=_NoKms(deal(2, 3).public),
        replay=SqlReplayCache(store.engine),
        limits=limits,
    )
    settings = ServerSettings(graceful_shutdown_seconds=0)
    servicer = GatewayServicer(ctx, RateLimiter(RateLimit(rate=1e6, burst=10**6)))
    spec = ServiceSpec(
        SERVICE_NAME,
        gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        servicer,
        # before: no per-method limits, so the transport stays at 16 MiB
        request_limits=None if old else request_limits(limits),
    )
    server = create_server([spec], settings=settings)
    await server.start()
    print(f"port {server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await server.stop(0)
    await store.close()


# ---- the measuring side ------------------------------------------------------------------


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / 1e6
    return fields["VmRSS"], fields["VmHWM"]


def _request(size: int) -> bytes:
    """An EncryptInput request as the SDK sends one, its sealed plaintext `size` bytes."""
    return gateway_pb2.EncryptInputRequest(
        chain_id=CHAIN_ID,
        type_code=BYTES_TYPE,
        owner_address=os.urandom(20),
        application_address=os.urandom(20),
        sealed_plaintext=gateway_pb2.SealedPlaintext(
            ephemeral_public_key=b"\x02" + os.urandom(32),
            nonce=os.urandom(12),
            ciphertext=os.urandom(1024) * (size // 1024),
        ),
    ).SerializeToString()


async def _flood(target: str, concurrency: int, body: bytes, rounds: int) -> Counter[str]:
    settings = ChannelSettings(max_message_bytes=16 * MIB, typed_errors=False)
    channels = [create_channel(target, settings) for _ in range(concurrency)]
    outcomes: Counter[str] = Counter()

    async def one(channel: grpc.aio.Channel) -> None:
        try:
            await channel.unary_unary(METHOD)(body, timeout=120)
            outcomes["OK"] += 1
        except grpc.aio.AioRpcError as err:
            outcomes[err.code().name] += 1

    try:
        for _ in range(rounds):
            await asyncio.gather(*(one(c) for c in channels))
    finally:
        for channel in channels:
            await channel.close(None)
    return outcomes


async def _warm_up(target: str) -> None:
    channel = create_channel(target, ChannelSettings(typed_errors=False))
    try:
        for _ in range(5):
            await channel.unary_unary(INFO)(b"", timeout=30)
    finally:
        await channel.close(None)


def measure(old: bool, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--folder", folder, *(["--old"] if old else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # one log line per refused request
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("port "):
                raise RuntimeError(f"the gateway process did not start: {line!r}")
            target = f"127.0.0.1:{int(line.split()[1])}"
            asyncio.run(_warm_up(target))
            time.sleep(0.2)
            idle, _ = _memory(proc.pid)
            started = time.perf_counter()
            outcomes = asyncio.run(_flood(target, args.concurrency, body, args.rounds))
            seconds = time.perf_counter() - started
            _, peak = _memory(proc.pid)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "idle_rss_mb": round(idle, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_above_idle_mb": round(max(0.0, peak - idle), 1),
        "seconds": round(seconds, 3),
        "outcomes": dict(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--size-mib", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.old, args.folder))
        return
    body = _request(int(args.size_mib * MIB))
    before = measure(True, args, body)
    after = measure(False, args, body)
    result = {
        "concurrency": args.concurrency,
        "request_bytes": len(body),
        "rounds": args.rounds,
        "before": before,
        "after": after,
        "ratio": round(after["peak_above_idle_mb"] / max(before["peak_above_idle_mb"], 0.1), 4),
        "goal_above_idle_mb": GOAL_MB,
        "goal_met": after["peak_above_idle_mb"] < GOAL_MB,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.concurrency} concurrent requests of {len(body)} bytes, {args.rounds} rounds")
    for side in ("before", "after"):
        r = result[side]
        print(
            f"{side:7} idle {r['idle_rss_mb']:8.1f} MB  peak {r['peak_rss_mb']:8.1f} MB  "
            f"above idle {r['peak_above_idle_mb']:8.1f} MB  {r['seconds']:.2f} s  {r['outcomes']}"
        )
    print(f"ratio after/before (peak above idle): {result['ratio']}")
    print(f"goal < {GOAL_MB} MB above idle: {'met' if result['goal_met'] else 'not met'}")


if __name__ == "__main__":
    main()
