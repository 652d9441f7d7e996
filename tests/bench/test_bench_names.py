"""`python bench/X.py` puts bench/ first on sys.path, so a script named like a top-level
package of the project would shadow it (bench/attestation.py once hid `attestation`)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_bench_script_shadows_a_top_level_package() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert {"nox", "attestation"} <= packages
    scripts = {p.stem for p in (REPO / "bench").glob("*.py")}
    assert not scripts & packages, f"rename these bench scripts: {sorted(scripts & packages)}"
