"""The committed oracle is what its generator writes, and its artifacts are built from it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "registry_contracts"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_oracle", CONTRACTS / "gen_oracle.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_oracle_matches_its_generator() -> None:
    gen = _generator()
    assert gen.TARGET.read_text(encoding="utf-8") == gen.render(), (
        "run python registry_contracts/gen_oracle.py"
    )


def test_oracle_artifacts_cover_every_type_and_are_fresh() -> None:
    gen = _generator()
    source = gen.TARGET.read_bytes()
    functions: set[str] = set()
    for widths in gen.groups():
        for name in (gen.contract_name(widths), "ComputeOracleBool"):
            art = json.loads((CONTRACTS / "artifacts" / f"{name}.json").read_text())
            assert art["sourceSha256"] == hashlib.sha256(source).hexdigest(), (
                f"{name}: run python registry_contracts/build.py"
            )
            functions |= {f["name"] for f in art["abi"] if f.get("type") == "function"}
    expected = {f"ops{gen.tag(s, n)}" for n in gen.WIDTHS for s in (False, True)}
    assert expected | {"opsBool"} <= functions
