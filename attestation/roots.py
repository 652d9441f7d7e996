"""The Intel SGX Root CA, shipped as package data and pinned by its SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

INTEL_SGX_ROOT_CA_SHA256: Final = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


def intel_sgx_root_ca() -> bytes:
    """DER of Intel's production "Intel SGX Root CA"; refuses a copy that is not the pinned one."""
    der = (Path(__file__).parent / "data" / "intel_sgx_root_ca.der").read_bytes()
    if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError("attestation/data/intel_sgx_root_ca.der does not match its pinned hash")
    return der
