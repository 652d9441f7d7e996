"""Standalone Intel TDX (and SGX) DCAP attestation: parse, verify, policy, providers.

Split by stage like go-tdx-guest and dcap-qvl: `quote` (bytes -> structures), `collateral`
(dcap-qvl JSON and PCS responses), `verify` (pure: quote + collateral + time + roots ->
verdict), `tcb` (level selection), `policy` (relying-party rules), `binding` (REPORTDATA of
DESIGN §3), `fetch` (the only network I/O), `providers` (configfs-tsm, simulated TDX),
`dual` (dcap-qvl as a second verifier). Imports nothing from `nox`. See docs/attestation.md.
"""

from __future__ import annotations

from attestation.binding import Role, check_binding, ext_data, report_data_for
from attestation.collateral import Collateral
from attestation.dual import DualVerdict, DualVerifier
from attestation.exceptions import AttestationError, PolicyViolation, VerificationError
from attestation.measurements import Measurements, workload_id
from attestation.policy import Policy, check_policy
from attestation.quote import EnclaveReport, Quote, QuoteHeader, TdReport, parse_quote
from attestation.roots import intel_sgx_root_ca
from attestation.verify import VerifiedQuote, Verifier, verify_quote

__all__ = [
    "AttestationError",
    "Collateral",
    "DualVerdict",
    "DualVerifier",
    "EnclaveReport",
    "Measurements",
    "Policy",
    "PolicyViolation",
    "Quote",
    "QuoteHeader",
    "Role",
    "TdReport",
    "VerificationError",
    "VerifiedQuote",
    "Verifier",
    "check_binding",
    "check_policy",
    "ext_data",
    "intel_sgx_root_ca",
    "parse_quote",
    "report_data_for",
    "verify_quote",
    "workload_id",
]
