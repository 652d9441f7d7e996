"""`noxctl devnet` as a user runs it: progress, summary, clean stop; and `--demo`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nox.kms.keys import load_public_file

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def _noxctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nox.cli", "devnet", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_devnet_starts_every_service_prints_its_summary_and_stops(tmp_path: Path) -> None:
    proc = _noxctl("--duration", "1", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    steps = [int(m) for m in re.findall(r"^devnet: \[\s*(\d+)/10\]", out, flags=re.M)]
    assert steps == list(range(1, 11))  # every step, in order
    assert out.index("devnet: ready") > out.index("[10/10]")
    assert out.rstrip().endswith("devnet: stopped")

    info = json.loads((tmp_path / "devnet.json").read_text())
    names = [e["name"] for e in info["endpoints"]]
    assert names == [
        "kms-1", "kms-2", "kms-3", "gateway", "orchestrator", "ingestor", "runner-1", "runner-2",
    ]  # fmt: skip
    assert info["services"] == [
        "nats", "chain", "kms x3 (2-of-3)", "gateway", "orchestrator", "ingestor", "runner x2",
    ]  # fmt: skip
    # the summary shows what devnet.json records
    for value in (
        info["nats"], info["gateway"], info["contracts"]["registry"], info["contracts"]["token"],
        info["contracts"]["compute"], info["contracts"]["acl"], info["kms_public_key"],
    ):  # fmt: skip
        assert value in out
    assert f"chain id      {info['chain_id']}" in out
    # the key set the summary names is the ceremony's published one
    public = load_public_file(tmp_path / "kms" / "public.json")
    assert info["kms_public_key"] == "0x" + public.public_key.hex()
    assert (public.threshold, len(public.public_shares)) == (2, 3)
    assert (tmp_path / "tdx" / "root.der").read_bytes()[:1] == b"\x30"  # a DER certificate


def test_devnet_demo_checks_every_value_and_exits_zero(tmp_path: Path) -> None:
    proc = _noxctl("--demo", "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "demo passed" in out
    ok_lines = re.findall(r"^devnet:\s+ok\s+(.+): decrypted (\d+), expected (\d+)$", out, re.M)
    assert len(ok_lines) == 5
    assert all(got == expected for _, got, expected in ok_lines)
    assert "refused (ACL_DENIED)" in out
    assert " BAD " not in out


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private schema in the test PostgreSQL, dropped afterwards."""
    base = os.environ.get(
        "NOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = f"nox_devnet_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_multi_process_devnet_on_anvil_and_postgres_passes_the_demo(
    tmp_path: Path, postgres_url: str
) -> None:
    proc = _noxctl(
        "--multi-process", "--demo", "--state-dir", str(tmp_path), "--store-url", postgres_url
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo passed" in proc.stdout
    info = json.loads((tmp_path / "devnet.json").read_text())
    assert info["services"][:2] == ["nats", "anvil"]
    assert info["services"][-1] == "runner x2 (processes)"
    # every service ran in its own process, and its log shows it served
    logs = sorted(p.stem for p in (tmp_path / "logs").glob("*.log"))
    assert logs == [
        "gateway", "ingestor", "kms-1", "kms-2", "kms-3", "orchestrator", "runner-1", "runner-2",
    ]  # fmt: skip
    # the gateway stored its handles in PostgreSQL, not in a SQLite file
    assert not (tmp_path / "gateway.sqlite3").exists()
    engine = sa.create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            origins = conn.execute(
                sa.text("SELECT count(*) FROM gateway_handles GROUP BY origin_task IS NULL")
            ).all()
    finally:
        engine.dispose()
    # the demo's encrypted inputs and the runners' results, both kinds stored there
    assert len(origins) == 2
    assert all(count > 0 for (count,) in origins)


def test_ctrl_c_stops_the_devnet_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "devnet", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "running (Ctrl-C stops it)" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rest.rstrip().endswith("devnet: stopped")


def test_audit_registry_verifies_every_node_of_a_multi_process_devnet(tmp_path: Path) -> None:
    """The auditor's view (issue 9): from the chain alone, every devnet node is verified."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nox.cli", "devnet", "--multi-process", "--state-dir",
         str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "running (Ctrl-C stops it)" in line:
                break
        info = json.loads((tmp_path / "devnet.json").read_text())
        audit = subprocess.run(
            [sys.executable, "-m", "nox.cli", "audit", "registry", "--json",
             "--rpc", info["chain_rpc_url"], "--registry", info["contracts"]["registry"],
             "--sim-dir", str(tmp_path / "tdx")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        proc.send_signal(signal.SIGINT)
        proc.stdout.read()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["ok"] is True
    audited = {(n["role"], n["address"], n["status"]) for n in report["nodes"]}
    assert audited == {(e["role"], e["enclave_address"], "active") for e in info["endpoints"]}
