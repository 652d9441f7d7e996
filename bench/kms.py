"""KMS delegation cost, next to the bare libsecp256k1 operations it is made of (one run).

    .venv/bin/python bench/kms.py [--seconds 1.0] [--json]

Node side, per ciphertext key K: `D_i = x_i·K`, a DLEQ proof (r·G, r·K), sealing `D_i` to
the requester (e·G, e·R, HKDF, AES-GCM, or RSA-OAEP). Requester side, 2-of-3: open each
sealed partial (one ECDH), verify each proof (z·G, c·PK_i, z·K, c·D_i, two additions),
combine (two multiplications, one addition). The "floor" column counts only those
multiplications at the bare coincurve speed measured in the same run, so the ratio shows
the overhead of everything else (hashing, AEAD, parsing, Python).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from coincurve import PrivateKey, PublicKey

from nox.crypto.delegation import (
    RequesterKey,
    combine_partials,
    delegation_context,
    make_sealed_partial,
)
from nox.crypto.dleq import prove_dleq, verify_dleq
from nox.crypto.threshold import deal

try:  # run as a script, bench/ is on sys.path
    from kms_service import measure_service
except ImportError:  # imported as bench.kms
    from bench.kms_service import measure_service


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, timed over about `seconds` after a short warm-up."""
    for _ in range(20):
        fn()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    s = args.seconds

    dealing = deal(2, 3)
    public = dealing.public
    share = dealing.shares[0]
    pk_i = public.public_share(share.index)
    k = PrivateKey().public_key.format()
    scalar = os.urandom(31) + b"\x01"
    k_point = PublicKey(k)
    other = PrivateKey().public_key
    context = delegation_context(epoch=0, request_id=os.urandom(16))
    secp_req = RequesterKey.generate_secp256k1()
    rsa_req = RequesterKey.generate_rsa(2048)

    bare = {
        "point_mul": rate(lambda: k_point.multiply(scalar), s),
        "g_mul": rate(lambda: PublicKey.from_valid_secret(scalar), s),
        "point_add": rate(lambda: PublicKey.combine_keys([k_point, other]), s),
        "point_parse": rate(lambda: PublicKey(k), s),
    }
    mul_us = 1e6 / bare["point_mul"]
    g_us = 1e6 / bare["g_mul"]
    add_us = 1e6 / bare["point_add"]

    d_i, proof = prove_dleq(share.value, k, context=context, public=pk_i)
    answers_secp = [
        make_sealed_partial(x, k, secp_req.public, context=context) for x in dealing.shares
    ]
    answers_rsa = [
        make_sealed_partial(x, k, rsa_req.public, context=context) for x in dealing.shares
    ]

    measured = {
        "dleq_prove": rate(lambda: prove_dleq(share.value, k, context=context, public=pk_i), s),
        "dleq_verify": rate(lambda: verify_dleq(pk_i, k, d_i, proof, context=context), s),
        "delegate_secp256k1": rate(
            lambda: make_sealed_partial(
                share, k, secp_req.public, context=context, public_share=pk_i
            ),
            s,
        ),
        "delegate_rsa2048": rate(
            lambda: make_sealed_partial(
                share, k, rsa_req.public, context=context, public_share=pk_i
            ),
            s,
        ),
        "client_2of3_first_t_secp256k1": rate(
            lambda: combine_partials(
                public,
                k,
                answers_secp,
                context=context,
                requester_key=secp_req,
                stop_at_threshold=True,
            ),
            s,
        ),
        "client_2of3_all_n_secp256k1": rate(
            lambda: combine_partials(
                public, k, answers_secp, context=context, requester_key=secp_req
            ),
            s,
        ),
        "client_2of3_first_t_rsa2048": rate(
            lambda: combine_partials(
                public,
                k,
                answers_rsa,
                context=context,
                requester_key=rsa_req,
                stop_at_threshold=True,
            ),
            s,
        ),
    }
    # Floors: the elliptic-curve operations alone, at this run's bare speed (µs).
    floors_us = {
        "dleq_prove": 2 * mul_us + g_us,  # D, A2 = r·K; A1 = r·G
        "dleq_verify": 3 * mul_us + g_us + 2 * add_us,
        "delegate_secp256k1": 3 * mul_us + 2 * g_us,  # D, A2, ECDH; A1, E
        "delegate_rsa2048": 2 * mul_us + g_us,  # + RSA-OAEP encrypt, not counted
        "client_2of3_first_t_secp256k1": 2 * (mul_us + 3 * mul_us + g_us + 2 * add_us)
        + 2 * mul_us
        + add_us,
        "client_2of3_all_n_secp256k1": 3 * (mul_us + 3 * mul_us + g_us + 2 * add_us)
        + 2 * mul_us
        + add_us,
        "client_2of3_first_t_rsa2048": 2 * (3 * mul_us + g_us + 2 * add_us) + 2 * mul_us + add_us,
    }

    # The service (bench/kms_service.py): whole signed Delegate requests (envelope, relayed
    # runner request and assignment, authorization, partials, signed answer), per node.
    service = measure_service(s)

    if args.json:
        print(
            json.dumps(
                {
                    "bare_per_s": bare,
                    "per_s": measured,
                    "floor_us": floors_us,
                    "service_per_s": service,
                }
            )
        )
        return
    print("bare libsecp256k1 (coincurve), same run:")
    for name, per_s in bare.items():
        print(f"  {name:<34} {per_s:>10,.0f}/s  {1e6 / per_s:>8.1f} µs")
    print("KMS (per node: one K; client: one K, t=2 of n=3):")
    print(f"  {'operation':<34} {'rate':>12}  {'time':>11}  {'EC floor':>9}  {'x floor':>7}")
    for name, per_s in measured.items():
        us = 1e6 / per_s
        floor = floors_us[name]
        print(
            f"  {name:<34} {per_s:>10,.0f}/s  {us:>8.1f} µs  {floor:>6.1f} µs  {us / floor:>6.2f}x"
        )
    print(
        "  (rsa2048 rows: the RSA operation is not in the EC floor; "
        "'first_t' stops after t valid partials, 'all_n' checks every answer)"
    )
    print("KMS service, one node, whole signed requests (keys = ciphertext points):")
    for name, per_s in service.items():
        print(f"  {name:<34} {per_s:>10,.0f}/s")


if __name__ == "__main__":
    main()
