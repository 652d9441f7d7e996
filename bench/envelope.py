"""Per-envelope sign and verify cost against bare coincurve sign/recover in the same run.

    .venv/bin/python bench/envelope.py [--iterations 2000] [--payload-size 128] [--json]

Each iteration times, back to back on the same data: coincurve `sign_recoverable` of a
32-byte digest, `sign_envelope`, coincurve `PublicKey.from_signature_and_message`, and
`verify_envelope` (memory replay cache, each envelope verified once with its own nonce).
Interleaving keeps the ratios fair on a busy machine. Reports medians, ops/s and the ratios
envelope/bare (DESIGN §4 target: verify within 1.5x of bare recover).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

from coincurve import PrivateKey, PublicKey
from google.protobuf.wrappers_pb2 import BytesValue

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache

NOW = 1_760_000_000


def run(iterations: int, payload_size: int) -> dict[str, Any]:
    key = EnclaveKey.generate()
    bare_key = PrivateKey(key.secret_bytes())
    domain = Domain(chain_id=31337, verifying_contract=os.urandom(20))
    audience = os.urandom(20)
    payload = BytesValue(value=os.urandom(payload_size))
    replay = MemoryReplayCache()
    digests = [os.urandom(32) for _ in range(iterations)]
    clock = time.perf_counter_ns
    times: dict[str, list[int]] = {"bare_sign": [], "sign": [], "bare_recover": [], "verify": []}

    for _ in range(50):  # warm-up: caches, allocator, the payload type hash
        env = sign_envelope(key, payload, domain=domain, audience=audience, now=NOW)
        verify_envelope(env, BytesValue, domain=domain, audience=audience, now=NOW, replay=replay)

    for digest in digests:
        t0 = clock()
        bare_sig = bare_key.sign_recoverable(digest, hasher=None)
        t1 = clock()
        env = sign_envelope(key, payload, domain=domain, audience=audience, now=NOW)
        t2 = clock()
        PublicKey.from_signature_and_message(bare_sig, digest, hasher=None)
        t3 = clock()
        verified = verify_envelope(
            env, BytesValue, domain=domain, audience=audience, now=NOW, replay=replay
        )
        t4 = clock()
        if verified.signer != key.address:
            raise SystemExit("verification recovered the wrong signer")
        times["bare_sign"].append(t1 - t0)
        times["sign"].append(t2 - t1)
        times["bare_recover"].append(t3 - t2)
        times["verify"].append(t4 - t3)

    medians_us = {name: statistics.median(values) / 1000 for name, values in times.items()}
    return {
        "iterations": iterations,
        "payload_size": payload_size,
        "envelope_size": env.ByteSize(),
        "python": platform.python_version(),
        "median_us": {k: round(v, 2) for k, v in medians_us.items()},
        "ops_per_s": {k: round(1e6 / v) for k, v in medians_us.items()},
        "ratio": {
            "sign_vs_bare_sign": round(medians_us["sign"] / medians_us["bare_sign"], 3),
            "verify_vs_bare_recover": round(medians_us["verify"] / medians_us["bare_recover"], 3),
        },
        "target_verify_ratio": 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--payload-size", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.iterations, args.payload_size)
    if args.json:
        print(json.dumps(result))
        return
    med, ops, ratio = result["median_us"], result["ops_per_s"], result["ratio"]
    print(
        f"envelope sign/verify, {result['iterations']} iterations, "
        f"payload {result['payload_size']} B (envelope {result['envelope_size']} B), median"
    )
    rows = [
        ("coincurve sign_recoverable", "bare_sign"),
        ("sign_envelope", "sign"),
        ("coincurve recover", "bare_recover"),
        ("verify_envelope", "verify"),
    ]
    for label, name in rows:
        print(f"  {label:28s} {med[name]:9.2f} µs  {ops[name]:8d} ops/s")
    print(f"  sign   / bare sign    = {ratio['sign_vs_bare_sign']:.2f}x")
    print(f"  verify / bare recover = {ratio['verify_vs_bare_recover']:.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
