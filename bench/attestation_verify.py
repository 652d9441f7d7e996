"""Quote verification time: the project's verifier (cold and warm) against dcap-qvl.

    .venv/bin/python bench/attestation_verify.py [--fixtures ../shared/fixtures/tdx] [-n 200]

cold = `verify_quote` (every call parses the quote, certificates, CRLs and JSON again and
verifies all nine ECDSA signatures of chains, CRLs, TCB info, QE identity, QE report and
quote; all that is kept between calls is the decoded trusted root, which is configuration,
and a memo of OID byte strings to dotted text);
warm = a long-lived `Verifier` whose time-independent collateral checks are cached (time
windows, QE report data, quote signature and the TCB evaluation still run per call);
dcap-qvl = `dcap_qvl.verify` (Rust, no cache). Median of n runs per quote.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

# This script is named like the package it measures: keep its own folder off the import
# path (python puts it first) and the repository root on it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import dcap_qvl  # noqa: E402

from attestation.collateral import Collateral  # noqa: E402
from attestation.providers.simulated import SimulatedTdx  # noqa: E402
from attestation.quote import read_quote_bytes  # noqa: E402
from attestation.roots import intel_sgx_root_ca  # noqa: E402
from attestation.verify import Verifier, verify_quote  # noqa: E402

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tdx"


def _median_us(fn: Callable[[], object], n: int) -> float:
    fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    index = json.loads((args.fixtures / "index.json").read_text())
    cases: list[tuple[str, bytes, Collateral, bytes, int]] = []
    for case in index:
        if case["error"] is None:
            quote = read_quote_bytes((args.fixtures / case["quote"]).read_bytes())
            coll = Collateral.from_json((args.fixtures / case["collateral"]).read_text())
            cases.append((case["id"], quote, coll, intel_sgx_root_ca(), case["now"]))
    sim = SimulatedTdx.generate()
    now = int(time.time())
    cases.append(
        ("simulated-tdx-v4", sim.quote(bytes(64)), sim.collateral(now=now), sim.root_der, now)
    )

    print(
        f"{'quote':<26} {'ours cold':>11} {'ours warm':>11} {'dcap-qvl':>11}"
        f"  (µs, median of {args.n})"
    )
    totals = [0.0, 0.0, 0.0]
    for name, quote, coll, root, at in cases:
        dq_coll = dcap_qvl.QuoteCollateralV3.from_json(coll.to_json())
        warm = Verifier([root])
        cold = partial(verify_quote, quote, coll, now=at, trusted_roots=[root])
        cold_us = _median_us(cold, args.n)
        warm_us = _median_us(partial(warm.verify, quote, coll, now=at), args.n)
        dq_us = _median_us(partial(dcap_qvl.verify_with_root_ca, quote, dq_coll, root, at), args.n)
        for i, v in enumerate((cold_us, warm_us, dq_us)):
            totals[i] += v
        print(f"{name:<26} {cold_us:>11.0f} {warm_us:>11.0f} {dq_us:>11.0f}")
    k = len(cases)
    cold, warm_t, dq = (t / k for t in totals)
    print(f"{'mean':<26} {cold:>11.0f} {warm_t:>11.0f} {dq:>11.0f}")
    print(f"cold / dcap-qvl = {cold / dq:.2f}x time; dcap-qvl / warm = {dq / warm_t:.1f}x speed-up")


if __name__ == "__main__":
    main()
