"""Fixtures of the attestation tests: the shared real-quote fixtures and a simulated platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestation.collateral import Collateral
from attestation.providers.simulated import SimulatedTdx
from attestation.quote import read_quote_bytes
from attestation.roots import intel_sgx_root_ca

#: A fixed time inside the simulated collateral's window (2026-06-01).
SIM_NOW = 1_780_272_000


class Fixtures:
    """Loads cases of ../shared/fixtures/tdx (index.json and negative/index.json)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.index: list[dict[str, Any]] = json.loads((root / "index.json").read_text())
        self.negative: list[dict[str, Any]] = json.loads(
            (root / "negative" / "index.json").read_text()
        )

    def quote(self, rel: str) -> bytes:
        return read_quote_bytes((self.root / rel).read_bytes())

    def collateral(self, rel: str) -> Collateral:
        return Collateral.from_json((self.root / rel).read_text())

    def case(self, case_id: str) -> dict[str, Any]:
        return next(c for c in self.index + self.negative if c["id"] == case_id)

    def negative_quote(self, case: dict[str, Any]) -> bytes:
        rel = case["file"] if case.get("file") and case["file"].endswith(".bin") else None
        return self.quote(rel or case["base_quote"])


@pytest.fixture(scope="session")
def fx(tdx_fixtures: Path) -> Fixtures:
    return Fixtures(tdx_fixtures)


@pytest.fixture(scope="session")
def intel_root() -> bytes:
    return intel_sgx_root_ca()


@pytest.fixture(scope="session")
def sim() -> SimulatedTdx:
    return SimulatedTdx.generate(clock=lambda: SIM_NOW)
