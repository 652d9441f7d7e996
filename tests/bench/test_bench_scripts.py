"""Every script in bench/ runs in a tiny size and prints what it promises.

Each script runs as a subprocess (as a person runs it, `python bench/NAME.py ...`) with its
smallest sizes; the test checks the exit status and the shape of the output (one JSON object
with the documented keys, numbers where figures are expected). No timing is asserted: the
machines are shared and noisy, so figures belong in docs/benchmarks.md, not in tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
TIMEOUT = 240
PG_URL = os.environ.get(
    "NOX_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_script(name: str, *args: str) -> str:
    """Run bench/`name` with `args` from the repository root; return its stdout."""
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def run_json(name: str, *args: str) -> dict[str, Any]:
    """Run a script with `--json`; its stdout must be exactly one JSON object."""
    value = json.loads(run_script(name, *args, "--json"))
    assert isinstance(value, dict)
    return value


def is_figure(value: object) -> bool:
    """A measured number: an int or float, finite and not negative (not a timing bound)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def figures(mapping: dict[str, Any], keys: set[str]) -> None:
    assert keys <= mapping.keys(), f"missing {keys - mapping.keys()}"
    for key in keys:
        assert is_figure(mapping[key]), f"{key} = {mapping[key]!r}"


def test_envelope() -> None:
    result = run_json("envelope.py", "--iterations", "20", "--payload-size", "64")
    assert result["iterations"] == 20
    assert result["payload_size"] == 64
    ops = {"bare_sign", "sign", "bare_recover", "verify"}
    figures(result["median_us"], ops)
    figures(result["ops_per_s"], ops)
    figures(result["ratio"], {"sign_vs_bare_sign", "verify_vs_bare_recover"})
    assert result["target_verify_ratio"] == 1.5


def test_attestation_prints_its_table(tdx_fixtures: Path) -> None:
    # bench/attestation_verify.py has no --json: check the table's header, rows and summary.
    index = json.loads((tdx_fixtures / "index.json").read_text())
    valid = [case["id"] for case in index if case["error"] is None]
    out = run_script("attestation_verify.py", "--fixtures", str(tdx_fixtures), "-n", "2")
    lines = out.splitlines()
    assert "dcap-qvl" in lines[0]
    for name in [*valid, "simulated-tdx-v4", "mean"]:
        row = next(line for line in lines if line.split()[:1] == [name])
        cells = row.split()[1:]
        assert len(cells) == 3
        assert all(is_figure(float(cell)) for cell in cells)
    assert "cold / dcap-qvl" in lines[-1]


def test_kms() -> None:
    result = run_json("kms.py", "--seconds", "0.01")
    figures(result["bare_per_s"], {"point_mul", "g_mul", "point_add", "point_parse"})
    operations = {
        "dleq_prove",
        "dleq_verify",
        "delegate_secp256k1",
        "delegate_rsa2048",
        "client_2of3_first_t_secp256k1",
        "client_2of3_all_n_secp256k1",
        "client_2of3_first_t_rsa2048",
    }
    figures(result["per_s"], operations)
    figures(result["floor_us"], operations)
    figures(result["service_per_s"], SERVICE_KEYS)


SERVICE_KEYS = {
    "node_batch1_keys_per_s",
    "node_batch16_keys_per_s",
    "grpc_batch16_keys_per_s",
    "grpc_batch16_requests_per_s",
}


def test_kms_service() -> None:
    figures(run_json("kms_service.py", "--seconds", "0.01"), SERVICE_KEYS)


def test_store_both_backends() -> None:
    result = run_json(
        "store.py", "--handles", "300", "--lookups", "20", "--backends", "sqlite,postgresql",
        "--pg-url", PG_URL,
    )  # fmt: skip
    assert set(result) == {"sqlite", "postgresql"}
    for backend in result.values():
        # The 300 populated handles plus the run's own put_input and publish_task writes.
        assert backend["handles"] > 300
        figures(
            backend,
            {"bulk_insert_per_s", "put_input_per_s", "put_input_p50_ms", "publish_3_per_s",
             "publish_3_p50_ms"},
        )  # fmt: skip
        assert set(backend["lookup"]) == {"1", "16", "256"}
        for latency in backend["lookup"].values():
            figures(latency, {"p50_ms", "p99_ms"})


def test_gateway() -> None:
    result = run_json(
        "gateway.py", "--handles", "200", "--calls", "20", "--concurrency", "4",
        "--backend", "sqlite",
    )  # fmt: skip
    assert result["backend"] == "sqlite"
    # The filled handles plus at least the 20 sequential and 20 concurrent EncryptInput calls.
    assert result["stored_handles"] >= 200 + 2 * 20
    figures(
        result,
        {"fill_seconds", "encrypt_input_per_s_sequential", "encrypt_input_per_s_concurrency_4"},
    )
    for name in (
        "encrypt_input_latency",
        "get_operands_1_latency",
        "get_operands_3_latency",
        "store_get_1_latency",
        "get_handle_status_1_latency",
        "get_handle_status_256_latency",
    ):
        figures(result[name], {"p50_ms", "p99_ms"})


def test_runner() -> None:
    result = run_json("runner.py", "--seconds", "0.001", "--tasks", "2")
    engine = result["engine_ops_per_second"]
    assert {"ADD", "MUL", "SELECT"} <= engine.keys()
    assert {"u8", "u64", "u256"} <= engine["ADD"].keys()
    for row in engine.values():
        assert row
        assert all(is_figure(v) for v in row.values())
    figures(result["task_split_seconds"], {"crypto", "compute", "rpc", "sign", "total"})


def test_signed_vs_plain() -> None:
    result = run_json("signed_vs_plain.py", "--calls", "40", "--rounds", "2", "--concurrency", "4")
    assert (result["calls"], result["concurrency"], result["handles"]) == (40, 4, 3)
    modes = {"plain", "plain_ecdsa", "signed", "signed_thread"}
    for kind in ("sequential", "concurrent"):
        assert set(result[kind]) == modes
        for row in result[kind].values():
            figures(
                row,
                {"calls_per_s", "p50_ms", "p99_ms", "cpu_us_per_call", "x_plain", "x_plain_p50",
                 "x_plain_cpu"},
            )  # fmt: skip
        # plain against itself, however noisy the machine.
        plain = result[kind]["plain"]
        assert plain["x_plain"] == plain["x_plain_p50"] == plain["x_plain_cpu"] == 1.0
        assert set(result["ratio"][kind]) == modes - {"plain"}
        figures(result["ratio"][kind], modes - {"plain"})
    sizes = result["bytes"]
    # The envelope adds its header and signature to the same payload, both ways.
    assert sizes["signed_request"] > sizes["plain_request"]
    assert sizes["signed_response"] > sizes["plain_response"]
    figures(
        result["crypto_us"],
        {"client_sign", "server_verify", "server_sign", "client_verify", "total"},
    )
    assert result["target_ratio"] == 1.25
    assert isinstance(result["target_met"], bool)


def test_signed_vs_plain_table_without_thread_mode() -> None:
    out = run_script(
        "signed_vs_plain.py", "--calls", "20", "--rounds", "2", "--concurrency", "2", "--no-thread"
    )
    assert "signed_thread" not in out
    assert out.count("plain ") >= 2  # a plain row in the sequential and concurrent tables
    assert "target: signed / plain <= 1.25x" in out
