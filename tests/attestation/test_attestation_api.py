"""The public API other components code against (pinned), and the package's independence."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import attestation
from attestation.roots import INTEL_SGX_ROOT_CA_SHA256, intel_sgx_root_ca

PUBLIC = {
    "AttestationError", "Collateral", "DualVerdict", "DualVerifier", "EnclaveReport",
    "Measurements", "Policy", "PolicyViolation", "Quote", "QuoteHeader", "Role", "TdReport",
    "VerificationError", "VerifiedQuote", "Verifier", "check_binding", "check_policy",
    "ext_data", "intel_sgx_root_ca", "parse_quote", "report_data_for", "verify_quote",
    "workload_id",
}  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert set(attestation.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(attestation, name) is not None


def test_package_imports_nothing_from_nox() -> None:
    root = Path(attestation.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "nox" or n.startswith("nox.") for n in names), path


def test_shipped_intel_root_is_the_fixture_root(tdx_fixtures: Path) -> None:
    der = intel_sgx_root_ca()
    assert hashlib.sha256(der).hexdigest() == INTEL_SGX_ROOT_CA_SHA256
    assert der == (tdx_fixtures / "dcap-qvl" / "TrustedRootCA.der").read_bytes()
