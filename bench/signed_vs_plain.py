"""Signed envelopes against plain messages: the same unary gRPC call both ways, in one run.

    .venv/bin/python bench/signed_vs_plain.py [--calls 2000] [--concurrency 16] [--handles 3]
                                              [--rounds 10] [--no-thread] [--profile] [--json]

A grpc.aio server built by `nox.rpc.create_server` (the production interceptors: metrics,
typed errors; health and reflection registered) on 127.0.0.1, port 0, serves one bench
service whose methods answer the same request with the same handler logic (look the handles
up in an in-memory table, build a GetOperands-sized answer). Modes:

- plain: request `nox.v1.GetOperandsPayload`, response `nox.v1.GetOperandsResponsePayload`
  (its 32-byte `request_hash` holds the task id, so both modes carry the same answer size);
  the client checks the operand count;
- signed: the production wire form, `GetOperandsRequest{envelope}` ->
  `GetOperandsResponse{envelope}`. The client signs (`sign_envelope_with_hash`, keeping the
  payload hash); the server verifies (`verify_envelope`: memory replay cache, signer checked
  against an in-memory set of authorized signers through `authorize`, as a registry role
  check), answers with `request_hash` = `Verified.payload_hash`, and signs the answer to the
  client, which verifies it (expected signer, authorized set, its own replay cache) and
  checks the answer's request hash and operand count. Nothing else differs: same handler,
  same channel, server and interceptors;
- signed_thread (unless `--no-thread`): as signed, with the server's verify-answer-sign in
  `asyncio.to_thread`, as the gateway's GetOperands does (its replay store blocks);
- plain_ecdsa, the control: plain, plus the same four secp256k1 operations done bare with
  coincurve (client sign and recover, server recover and sign), no envelope code. plain ->
  plain_ecdsa is the signatures' own cost in the call; plain_ecdsa -> signed is everything
  else the envelopes add (hashing, checks, replay cache, bigger messages, wrapping).

The payload is realistic: a GetOperandsPayload with an orchestrator-signed TaskAssignment
(itself holding an ingestor-signed TransactionMessage), a requester key and `--handles`
handles; the answer holds the stored ciphertexts and two KMS delegation envelopes. Nested
envelopes are carried, not verified (the same in every mode): what is measured is the cost of
the outer envelope on the call.

Client and server share one process and event loop (as the other bench scripts), so a call's
time is client + server work. Modes are interleaved in `--rounds` blocks (the order
alternating) so a busy machine slows them alike. Reported per mode, sequential and with
`--concurrency` calls in flight: calls/s, latency p50/p99 and process CPU µs per call
(all threads). The ratio ("x plain") is plain calls/s over the mode's calls/s, taken round
by round (the mode's block time over the adjacent plain block's) and the median over rounds
reported, so a burst of other work on a shared machine does not decide it (target for
signed: at most 1.25, issue 10). `crypto_us` times the four envelope operations of one
signed call alone, in a tight loop. `--profile` prints a cProfile of signed sequential
calls (to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from coincurve import PrivateKey, PublicKey

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, sign_envelope_with_hash, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import FailedPrecondition, NotFound, PermissionDenied
from nox.rpc import ServerSettings, ServiceSpec, create_channel, create_server
from nox.v1 import common_pb2, gateway_pb2, kms_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

SERVICE = "nox.bench.v1.SignedVsPlainService"
PLAIN = f"/{SERVICE}/Plain"
SIGNED = f"/{SERVICE}/Signed"
SIGNED_THREAD = f"/{SERVICE}/SignedThread"
PLAIN_ECDSA = f"/{SERVICE}/PlainEcdsa"
CHAIN_ID = 31337
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=bytes.fromhex("11" * 20))
COMPUTE = bytes.fromhex("22" * 20)
TARGET_RATIO = 1.25
TTL = 60


def _handle() -> bytes:
    """A random handle of this chain for a uint64 value (type code 11, version 0)."""
    return os.urandom(26) + CHAIN_ID.to_bytes(4, "big") + bytes([11, 0])


def _delegation_envelope(kms: EnclaveKey, gateway: bytes, handles: list[bytes]) -> SignedEnvelope:
    """A KMS node's signed answer with one delegation per handle (real sizes, random bytes)."""
    payload = kms_pb2.DelegateResponsePayload(
        request_hash=os.urandom(32),
        node_index=1,
        epoch=0,
        delegations=[
            kms_pb2.Delegation(
                handle=h,
                ephemeral_public_key=b"\x02" + os.urandom(32),
                encrypted_partial=kms_pb2.EncryptedPartial(
                    ciphertext=os.urandom(33 + 16),
                    ephemeral_public_key=b"\x03" + os.urandom(32),
                    nonce=os.urandom(12),
                ),
                proof=kms_pb2.DleqProof(challenge=os.urandom(32), response=os.urandom(32)),
            )
            for h in handles
        ],
    )
    return sign_envelope(kms, payload, domain=DOMAIN, audience=gateway, now=int(time.time()))


class Fixture:
    """Keys, the authorized-signer set, the stored operands and the request payload."""

    def __init__(self, handles: int) -> None:
        self.server_key = EnclaveKey.generate()
        self.client_key = EnclaveKey.generate()
        orchestrator, ingestor = EnclaveKey.generate(), EnclaveKey.generate()
        # The registry stand-in: signers the receivers accept (each side checks the other).
        self.authorized = {self.server_key.address, self.client_key.address}
        now = int(time.time())
        inputs = [_handle() for _ in range(handles)]
        outputs = [_handle() for _ in range(handles)]
        self.store = {
            h: common_pb2.TypedCiphertext(
                handle=h,
                ciphertext=os.urandom(8 + 16),
                ephemeral_public_key=b"\x02" + os.urandom(32),
                nonce=os.urandom(12),
            )
            for h in inputs
        }
        transaction = task_pb2.TransactionMessage(
            chain_id=CHAIN_ID, block_number=1, block_hash=os.urandom(32), block_timestamp=now,
            transaction_hash=os.urandom(32), compute_address=COMPUTE,
            operations=[task_pb2.Operation(log_index=0, operator=16, caller=os.urandom(20),
                                           input_handles=inputs, output_handles=outputs)],
        )  # fmt: skip
        task_id = os.urandom(32)
        assignment = task_pb2.TaskAssignment(
            task_id=task_id,
            transaction=sign_envelope(
                ingestor, transaction, domain=DOMAIN, audience=COMPUTE, now=now, ttl=3600
            ),
            input_handles=inputs, output_handles=outputs,
            runner_address=self.client_key.address, assigned_at=now,
            lease_expires_at=now + 3600, attempt=1, redundancy=1,
            limits=task_pb2.TaskLimits(max_operations=8, max_input_handles=8,
                                       max_output_handles=8, max_ciphertext_bytes=4096,
                                       max_execution_seconds=60),
        )  # fmt: skip
        self.payload = gateway_pb2.GetOperandsPayload(
            task_id=task_id,
            assignment=sign_envelope(
                orchestrator,
                assignment,
                domain=DOMAIN,
                audience=self.client_key.address,
                now=now,
                ttl=3600,
            ),
            requester_key=common_pb2.RequesterKey(
                kind=common_pb2.REQUESTER_KEY_KIND_SECP256K1,
                public_key=b"\x02" + os.urandom(32),
            ),
            handles=inputs,
        )
        # Bare libsecp256k1 operations for the plain_ecdsa control (no envelope around them).
        self.bare_server = PrivateKey(self.server_key.secret_bytes())
        self.bare_client = PrivateKey(self.client_key.secret_bytes())
        self.bare_digest = os.urandom(32)
        self.bare_signature = self.bare_client.sign_recoverable(self.bare_digest, hasher=None)
        kms = [EnclaveKey.generate() for _ in range(2)]
        self.delegations = [_delegation_envelope(k, self.server_key.address, inputs) for k in kms]

    def authorize(self, signer: bytes) -> None:
        if signer not in self.authorized:
            raise PermissionDenied("signer is not authorized")


class Servicer:
    """The bench service: one handler body, reached plain or through envelopes."""

    def __init__(self, fx: Fixture, replay: MemoryReplayCache) -> None:
        self.fx = fx
        self.replay = replay

    def answer(
        self, payload: gateway_pb2.GetOperandsPayload, request_hash: bytes
    ) -> gateway_pb2.GetOperandsResponsePayload:
        """The handler's own work, the same in every mode."""
        try:
            operands = [self.fx.store[h] for h in payload.handles]
        except KeyError:
            raise NotFound("handle not stored") from None
        return gateway_pb2.GetOperandsResponsePayload(
            request_hash=request_hash,
            operands=operands,
            kms_delegations=self.fx.delegations,
            kms_threshold=2,
            kms_epoch=0,
        )

    async def plain(
        self, request: gateway_pb2.GetOperandsPayload, context: Any
    ) -> gateway_pb2.GetOperandsResponsePayload:
        del context
        return self.answer(request, request.task_id)

    async def plain_ecdsa(
        self, request: gateway_pb2.GetOperandsPayload, context: Any
    ) -> gateway_pb2.GetOperandsResponsePayload:
        """plain, plus one bare recovery and one bare signature (the control mode)."""
        del context
        fx = self.fx
        PublicKey.from_signature_and_message(fx.bare_signature, fx.bare_digest, hasher=None)
        answer = self.answer(request, request.task_id)
        fx.bare_server.sign_recoverable(os.urandom(32), hasher=None)
        return answer

    def open_and_answer(self, request: gateway_pb2.GetOperandsRequest) -> SignedEnvelope:
        fx = self.fx
        now = int(time.time())
        verified = verify_envelope(
            request.envelope,
            gateway_pb2.GetOperandsPayload,
            domain=DOMAIN,
            audience=fx.server_key.address,
            now=now,
            replay=self.replay,
            authorize=fx.authorize,
        )
        answer = self.answer(verified.message, verified.payload_hash)
        return sign_envelope(
            fx.server_key, answer, domain=DOMAIN, audience=verified.signer, now=now, ttl=TTL
        )

    async def signed(
        self, request: gateway_pb2.GetOperandsRequest, context: Any
    ) -> gateway_pb2.GetOperandsResponse:
        del context
        return gateway_pb2.GetOperandsResponse(envelope=self.open_and_answer(request))

    async def signed_thread(
        self, request: gateway_pb2.GetOperandsRequest, context: Any
    ) -> gateway_pb2.GetOperandsResponse:
        del context
        envelope = await asyncio.to_thread(self.open_and_answer, request)
        return gateway_pb2.GetOperandsResponse(envelope=envelope)


def _add(servicer: Servicer, server: grpc.aio.Server) -> None:
    plain_in = gateway_pb2.GetOperandsPayload
    plain_out = gateway_pb2.GetOperandsResponsePayload
    signed_in, signed_out = gateway_pb2.GetOperandsRequest, gateway_pb2.GetOperandsResponse
    handlers = {
        "Plain": grpc.unary_unary_rpc_method_handler(
            servicer.plain,
            request_deserializer=plain_in.FromString,
            response_serializer=plain_out.SerializeToString,
        ),
        "Signed": grpc.unary_unary_rpc_method_handler(
            servicer.signed,
            request_deserializer=signed_in.FromString,
            response_serializer=signed_out.SerializeToString,
        ),
        "PlainEcdsa": grpc.unary_unary_rpc_method_handler(
            servicer.plain_ecdsa,
            request_deserializer=plain_in.FromString,
            response_serializer=plain_out.SerializeToString,
        ),
        "SignedThread": grpc.unary_unary_rpc_method_handler(
            servicer.signed_thread,
            request_deserializer=signed_in.FromString,
            response_serializer=signed_out.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class Client:
    """The calling side: one coroutine per mode, each checking its answer."""

    def __init__(self, fx: Fixture, channel: grpc.aio.Channel, replay: MemoryReplayCache) -> None:
        self.fx = fx
        self.replay = replay
        self._plain = {
            path: channel.unary_unary(
                path,
                request_serializer=gateway_pb2.GetOperandsPayload.SerializeToString,
                response_deserializer=gateway_pb2.GetOperandsResponsePayload.FromString,
            )
            for path in (PLAIN, PLAIN_ECDSA)
        }
        self._signed = {
            path: channel.unary_unary(
                path,
                request_serializer=gateway_pb2.GetOperandsRequest.SerializeToString,
                response_deserializer=gateway_pb2.GetOperandsResponse.FromString,
            )
            for path in (SIGNED, SIGNED_THREAD)
        }

    async def plain(self) -> None:
        answer = await self._plain[PLAIN](self.fx.payload)
        if len(answer.operands) != len(self.fx.payload.handles):
            raise SystemExit("plain call returned the wrong operands")

    async def plain_ecdsa(self) -> None:
        """The control: plain, plus the signed path's four secp256k1 operations done bare
        (client sign and recover, server recover and sign) with no envelope code around."""
        fx = self.fx
        fx.bare_client.sign_recoverable(os.urandom(32), hasher=None)
        answer = await self._plain[PLAIN_ECDSA](fx.payload)
        PublicKey.from_signature_and_message(fx.bare_signature, fx.bare_digest, hasher=None)
        if len(answer.operands) != len(fx.payload.handles):
            raise SystemExit("plain call returned the wrong operands")

    def _sign_request(self, now: int) -> tuple[SignedEnvelope, bytes]:
        fx = self.fx
        return sign_envelope_with_hash(
            fx.client_key, fx.payload, domain=DOMAIN, audience=fx.server_key.address, now=now
        )

    def _open_answer(self, request_hash: bytes, answer: SignedEnvelope, now: int) -> None:
        fx = self.fx
        verified = verify_envelope(
            answer,
            gateway_pb2.GetOperandsResponsePayload,
            domain=DOMAIN,
            audience=fx.client_key.address,
            now=now,
            replay=self.replay,
            expected_signer=fx.server_key.address,
            authorize=fx.authorize,
        )
        if verified.message.request_hash != request_hash:
            raise FailedPrecondition("answer is bound to another request")
        if len(verified.message.operands) != len(fx.payload.handles):
            raise SystemExit("signed call returned the wrong operands")

    async def _signed_via(self, path: str) -> None:
        now = int(time.time())
        envelope, request_hash = self._sign_request(now)
        response = await self._signed[path](gateway_pb2.GetOperandsRequest(envelope=envelope))
        self._open_answer(request_hash, response.envelope, int(time.time()))

    async def signed(self) -> None:
        await self._signed_via(SIGNED)

    async def signed_thread(self) -> None:
        await self._signed_via(SIGNED_THREAD)


def pct(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def _block(
    call: Callable[[], Awaitable[None]], count: int, concurrency: int, into: list[float]
) -> tuple[float, float]:
    """Run `count` calls with `concurrency` in flight; append latencies (ms); return the
    wall-clock and the process CPU seconds (all threads, gRPC's included) they took."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter()
            await call()
            into.append((time.perf_counter() - start) * 1000)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return time.perf_counter() - started, time.process_time() - cpu


async def _measure(
    calls: dict[str, Callable[[], Awaitable[None]]], count: int, concurrency: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Per mode: calls/s, latency p50/p99, CPU µs per call, and `x_plain`: the median over
    rounds of the mode's block time over the plain block's time in the same round (adjacent
    blocks see the same machine load, so this ratio resists bursts of other processes)."""
    names = list(calls)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpu = dict.fromkeys(names, 0.0)
    per_round = [count // rounds + (1 if i < count % rounds else 0) for i in range(rounds)]
    for i, n in enumerate(per_round):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            wall, used = await _block(calls[name], n, concurrency, latencies[name])
            walls[name].append(wall)
            cpu[name] += used
    plain = walls[names[0]]
    plain_p50 = pct(latencies[names[0]], 50)
    return {
        name: {
            "calls_per_s": round(count / sum(walls[name]), 1),
            "p50_ms": round(pct(latencies[name], 50), 3),
            "p99_ms": round(pct(latencies[name], 99), 3),
            "cpu_us_per_call": round(cpu[name] / count * 1e6, 1),
            "x_plain": round(
                statistics.median(w / p for w, p in zip(walls[name], plain, strict=True)), 3
            ),
            # The same comparison by median latency and by CPU time: steadier under load.
            "x_plain_p50": round(pct(latencies[name], 50) / plain_p50, 3),
            "x_plain_cpu": round(cpu[name] / cpu[names[0]], 3),
        }
        for name in names
    }


def _crypto_us(fx: Fixture, iterations: int) -> dict[str, float]:
    """Median µs of the four envelope operations of one signed call, alone."""
    server_replay, client_replay = MemoryReplayCache(10**7), MemoryReplayCache(10**7)
    servicer = Servicer(fx, server_replay)
    times: dict[str, list[int]] = {k: [] for k in ("client_sign", "server_verify",
                                                   "server_sign", "client_verify")}  # fmt: skip
    clock = time.perf_counter_ns
    for _ in range(iterations):
        now = int(time.time())
        t0 = clock()
        request = sign_envelope(
            fx.client_key, fx.payload, domain=DOMAIN, audience=fx.server_key.address, now=now
        )
        t1 = clock()
        verified = verify_envelope(
            request, gateway_pb2.GetOperandsPayload, domain=DOMAIN,
            audience=fx.server_key.address, now=now, replay=server_replay, authorize=fx.authorize,
        )  # fmt: skip
        t2 = clock()
        answer = servicer.answer(verified.message, verified.payload_hash)
        t3 = clock()
        response = sign_envelope(
            fx.server_key, answer, domain=DOMAIN, audience=verified.signer, now=now, ttl=TTL
        )
        t4 = clock()
        verify_envelope(
            response, gateway_pb2.GetOperandsResponsePayload, domain=DOMAIN,
            audience=fx.client_key.address, now=now, replay=client_replay,
            expected_signer=fx.server_key.address, authorize=fx.authorize,
        )  # fmt: skip
        t5 = clock()
        times["client_sign"].append(t1 - t0)
        times["server_verify"].append(t2 - t1)
        times["server_sign"].append(t4 - t3)
        times["client_verify"].append(t5 - t4)
    out = {k: round(statistics.median(v) / 1000, 1) for k, v in times.items()}
    out["total"] = round(sum(out.values()), 1)
    return out


async def _profile(client: Client, count: int, out: io.StringIO) -> None:
    """cProfile `count` sequential signed calls (this thread only: gRPC's C core is not seen)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        await client.signed()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fx = Fixture(args.handles)
    total = 2 * args.calls + 1000
    server_replay = MemoryReplayCache(max(200_000, 3 * total))
    client_replay = MemoryReplayCache(max(200_000, 3 * total))
    spec = ServiceSpec(SERVICE, _add, Servicer(fx, server_replay))
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    channel = create_channel(server.target)
    profile_text = io.StringIO()
    try:
        client = Client(fx, channel, client_replay)
        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "plain": client.plain,
            "plain_ecdsa": client.plain_ecdsa,
            "signed": client.signed,
        }
        if not args.no_thread:
            calls["signed_thread"] = client.signed_thread
        for call in calls.values():  # warm-up: connection, caches, thread pool
            await _block(call, 50, 1, [])
            await _block(call, 4 * args.concurrency, args.concurrency, [])
        sequential = await _measure(calls, args.calls, 1, args.rounds)
        concurrent = await _measure(calls, args.calls, args.concurrency, args.rounds)
        if args.profile:
            await _profile(client, args.calls, profile_text)
    finally:
        await channel.close(None)
        await server.stop(0)
    probe = gateway_pb2.GetOperandsRequest(
        envelope=sign_envelope(
            fx.client_key, fx.payload, domain=DOMAIN, audience=fx.server_key.address,
            now=int(time.time()),
        )
    )  # fmt: skip
    answer = Servicer(fx, MemoryReplayCache()).answer(fx.payload, bytes(32))
    signed_answer = gateway_pb2.GetOperandsResponse(
        envelope=sign_envelope(
            fx.server_key, answer, domain=DOMAIN, audience=fx.client_key.address,
            now=int(time.time()),
        )
    )  # fmt: skip

    def ratios(table: dict[str, dict[str, float]]) -> dict[str, float]:
        return {name: row["x_plain"] for name, row in table.items() if name != "plain"}

    result: dict[str, Any] = {
        "calls": args.calls,
        "concurrency": args.concurrency,
        "handles": args.handles,
        "rounds": args.rounds,
        "bytes": {
            "plain_request": fx.payload.ByteSize(),
            "signed_request": probe.ByteSize(),
            "plain_response": answer.ByteSize(),
            "signed_response": signed_answer.ByteSize(),
        },
        "sequential": sequential,
        "concurrent": concurrent,
        "ratio": {"sequential": ratios(sequential), "concurrent": ratios(concurrent)},
        "target_ratio": TARGET_RATIO,
        "crypto_us": _crypto_us(fx, min(args.calls, 500)),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    result["target_met"] = all(r["signed"] <= TARGET_RATIO for r in result["ratio"].values())
    if args.profile:
        print(profile_text.getvalue(), file=sys.stderr)
    return result


def _print(result: dict[str, Any]) -> None:
    b = result["bytes"]
    print(
        f"signed vs plain unary call, {result['calls']} calls per measurement, "
        f"{result['handles']} handles; request {b['plain_request']} -> {b['signed_request']} B, "
        f"response {b['plain_response']} -> {b['signed_response']} B"
    )
    for kind, label in (("sequential", "1 in flight"),
                        ("concurrent", f"{result['concurrency']} in flight")):  # fmt: skip
        print(f"\n{kind} ({label})")
        print(
            f"  {'mode':<14} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x plain':>8}"
            f" {'CPU µs/call':>12}   x plain by p50, by CPU"
        )
        for name, row in result[kind].items():
            print(
                f"  {name:<14} {row['calls_per_s']:>9.0f} {row['p50_ms']:>8.3f}"
                f" {row['p99_ms']:>8.3f} {row['x_plain']:>7.2f}x {row['cpu_us_per_call']:>12.0f}"
                f"   {row['x_plain_p50']:.2f}x, {row['x_plain_cpu']:.2f}x"
            )
    c = result["crypto_us"]
    print(
        f"\nenvelope crypto alone per signed call (median µs): client sign {c['client_sign']}, "
        f"server verify {c['server_verify']}, server sign {c['server_sign']}, "
        f"client verify {c['client_verify']}; total {c['total']}"
    )
    verdict = "met" if result["target_met"] else "NOT met"
    print(f"target: signed / plain <= {result['target_ratio']}x (inline signed): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode and measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--handles", type=int, default=3, help="handles in the request")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks per mode")
    parser.add_argument(
        "--no-thread", action="store_true", help="skip the signed-in-worker-thread mode"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile signed calls (stderr)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.calls < args.rounds or args.calls < 2:
        parser.error("--calls must be at least --rounds (and 2)")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    _print(result)


if __name__ == "__main__":
    main()
