"""Shared fixtures: paths of the repository and the shared TDX fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tdx_fixtures() -> Path:
    path = SHARED_FIXTURES / "tdx"
    if not path.is_dir():
        pytest.fail(f"shared TDX fixtures not found at {path} (shared/ must sit beside the repo)")
    return path
