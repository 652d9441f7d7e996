"""Compile every Solidity source under `registry_contracts/src/` into committed artifacts.

    python registry_contracts/build.py           # (re)write registry_contracts/artifacts/*.json
    python registry_contracts/build.py --check   # recompile in a temp dir, compare byte for byte

The compiler is the npm `solc` package pinned in package.json (its JS API, run through node),
so the Python runtime never needs a compiler: it loads the JSON artifacts. Settings are fixed
here (evmVersion "prague", optimizer on, 200 runs) and recorded in every artifact together
with the compiler version and the sha256 of every source, so an auditor can reproduce the
deployed bytecode from the sources. Adding a `.sol` file under `src/` (including test oracles
under `src/test/`) is all it takes to get its contracts built.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = HERE / "src"
ARTIFACTS = HERE / "artifacts"
EXPECTED_COMPILER = "0.8.30+commit.73712a01"

SETTINGS: dict[str, Any] = {
    "evmVersion": "prague",
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": True,
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

# Runs solc's standard-JSON interface: stdin = input JSON, stdout = {version, output}.
_NODE_DRIVER = """
const solc = require('solc');
let data = '';
process.stdin.on('data', (c) => { data += c; });
process.stdin.on('end', () => {
  const out = solc.compile(data);
  process.stdout.write(JSON.stringify({version: solc.version(), output: JSON.parse(out)}));
});
"""


class BuildError(Exception):
    """Compilation failed or the committed artifacts are stale."""


def _sources() -> dict[str, str]:
    files = sorted(p for p in SRC.rglob("*.sol") if p.is_file())
    return {p.relative_to(HERE).as_posix(): p.read_text(encoding="utf-8") for p in files}


def compile_sources() -> dict[str, bytes]:
    """Compile all sources; return {artifact file name: exact file bytes}."""
    sources = _sources()
    if not sources:
        raise BuildError(f"no Solidity sources under {SRC}")
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    node = shutil.which("node")
    if node is None:
        raise BuildError("node not found on PATH (run ./scripts/bootstrap)")
    proc = subprocess.run(
        [node, "-e", _NODE_DRIVER],
        input=json.dumps(std_input).encode(),
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(f"solc driver failed: {proc.stderr.decode(errors='replace')}")
    result = json.loads(proc.stdout)
    version: str = result["version"]
    if not version.startswith(EXPECTED_COMPILER):
        raise BuildError(f"compiler {version} is not the pinned {EXPECTED_COMPILER}")
    output = result["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sources.items()}
    settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
    files: dict[str, bytes] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for name, data in sorted(contracts.items()):
            if name in {n.removesuffix(".json") for n in files}:
                raise BuildError(f"two contracts named {name}: artifact names must be unique")
            artifact = {
                "contractName": name,
                "sourceName": source_name,
                "abi": data["abi"],
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "compiler": {"name": "solc", "version": version, "settings": settings},
                "sourceSha256": digests[source_name],
            }
            files[f"{name}.json"] = (json.dumps(artifact, indent=1, sort_keys=True) + "\n").encode()
    return files


def write(files: dict[str, bytes], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        (target / name).write_bytes(content)


def check() -> None:
    """Recompile into a temp dir and compare with the committed artifacts byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        write(compile_sources(), fresh)
        want = {p.name: p.read_bytes() for p in fresh.glob("*.json")}
    have = {p.name: p.read_bytes() for p in ARTIFACTS.glob("*.json")} if ARTIFACTS.is_dir() else {}
    problems = [f"missing artifact {n}" for n in sorted(want.keys() - have.keys())]
    problems += [
        f"stale artifact {n} (no such contract)" for n in sorted(have.keys() - want.keys())
    ]
    problems += [
        f"artifact {n} differs" for n in sorted(want.keys() & have.keys()) if want[n] != have[n]
    ]
    if problems:
        raise BuildError(
            "contract artifacts are not reproduced by the sources "
            "(run python registry_contracts/build.py):\n  " + "\n  ".join(problems)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, do not write")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check()
            print(f"contract artifacts reproduce byte for byte ({EXPECTED_COMPILER})")
        else:
            files = compile_sources()
            write(files, ARTIFACTS)
            print(f"wrote {len(files)} artifacts to {ARTIFACTS.relative_to(REPO)}")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
