"""The README's two commands, run as a newcomer would: in a fresh clone, nothing prepared.

`./noxctl devnet --demo` must bring the whole network up from nothing (its own virtual
environment, npm tools, nats-server, chain, KMS, gateway, orchestrator, ingestor, runners)
and pass the confidential-token demo; `./scripts/test` must run its checks and tests there.
The inner test run is limited to the CLI tests: running the whole suite from inside itself
would recurse, and the outer run already covers every other test.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("fresh")
    clone = top / "main"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    shared = REPO_ROOT.parent / "shared"
    if shared.is_dir():  # tests read ../shared/fixtures, as in CI
        (top / "shared").symlink_to(shared)
    return clone


@pytest.mark.e2e
@pytest.mark.slow
def test_readme_devnet_command_runs_the_demo_in_a_fresh_clone(fresh_clone: Path) -> None:
    readme = (fresh_clone / "README.md").read_text()
    assert "./noxctl devnet" in readme
    proc = _run(
        ["./noxctl", "devnet", "--demo", "--state-dir", str(fresh_clone / ".devnet")],
        cwd=fresh_clone,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (fresh_clone / ".venv" / "bin" / "noxctl").exists()
    assert re.search(r"demo passed: \d+ decrypted values match the reference model", proc.stdout)
    assert "stranger decrypting alice's balance: refused (ACL_DENIED)" in proc.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_readme_test_command_runs_in_a_fresh_clone(fresh_clone: Path) -> None:
    readme = (fresh_clone / "README.md").read_text()
    assert "./scripts/test" in readme
    proc = _run(["./scripts/test", "tests/test_noxctl.py", "-q"], cwd=fresh_clone, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("generated protobuf code is fresh", "buf lint", "contracts", "mypy", "pytest"):
        assert f"== {step}" in proc.stdout
    assert re.search(r"\d+ passed", proc.stdout)
