"""Load the committed contract artifacts written by `registry_contracts/build.py`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nox.chain.exceptions import ArtifactNotFound

#: The artifacts folder of this checkout (the Python runtime never needs a compiler).
DEFAULT_ARTIFACTS_DIR = Path(__file__).resolve().parents[2] / "registry_contracts" / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """ABI and bytecode of one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    compiler_version: str
    source_name: str
    source_sha256: str


def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """The artifact of contract `name` (e.g. "NoxRegistry")."""
    return _load(name, (directory or DEFAULT_ARTIFACTS_DIR).resolve())


@cache
def _load(name: str, directory: Path) -> Artifact:
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactNotFound(f"no artifact {name}.json in {directory}") from None
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
        compiler_version=data["compiler"]["version"],
        source_name=data["sourceName"],
        source_sha256=data["sourceSha256"],
    )


def all_artifacts(directory: Path | None = None) -> list[Artifact]:
    """Every artifact in the folder (used to decode custom errors of any contract)."""
    folder = (directory or DEFAULT_ARTIFACTS_DIR).resolve()
    return [_load(p.stem, folder) for p in sorted(folder.glob("*.json"))]
