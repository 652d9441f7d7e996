"""The attestation settings every service shares (one set of names, each service's prefix).

A service's settings class inherits `AttestationSettings`, so the same fields are
`NOX_RUNNER_PCCS_URL`, `NOX_GATEWAY_PCCS_URL`, `NOX_KMS_PCCS_URL`, ... (and the same keys in
the KMS settings file). `nox.attest.bootstrap` builds everything from them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings


class AttestationSettings(BaseSettings):
    """Quote provider, collateral source, trusted roots and TCB policy of a service.

    Production (no `dangerous_*` set): quotes from configfs-tsm, collateral from `pccs_url`
    (Intel's PCS when unset), Intel's SGX root CA only, the strict TCB policy.
    """

    pccs_url: str | None = None
    """PCCS (or Intel PCS) base URL peers' collateral is fetched from; unset: Intel's PCS,
    or with `dangerous_simulated_tdx_dir` the dev PKI's collateral made in-process."""
    collateral_cache_dir: Path | None = None
    """Folder (made 0700) where fetched collateral is cached (0600 files) across restarts."""
    collateral_refresh_margin_seconds: int = Field(default=6 * 3600, ge=0)
    """Refresh a platform's collateral this long before its earliest nextUpdate."""
    collateral_retry_seconds: int = Field(default=60, ge=1)
    """After a failed refresh (PCCS outage), retry this often until the cache expires."""
    tcb_policy_allow_sw_hardening_needed: bool = False
    """Accept peers whose TCB status is SWHardeningNeeded."""
    tcb_policy_allow_configuration_needed: bool = False
    """Accept peers whose TCB status is ConfigurationNeeded."""
    tcb_policy_out_of_date_grace_seconds: int | None = Field(default=None, ge=0)
    """Accept an OutOfDate TCB this long after the TCB evaluation that made it so (unset:
    never). Revoked is never accepted."""
    tcb_policy_denied_advisories: tuple[str, ...] = ()
    """Intel advisory ids (INTEL-SA-...) a peer's TCB level must not carry."""
    dangerous_simulated_tdx_dir: Path | None = None
    """Simulated TDX (`SimulatedTdx.create` folder): this service's quotes are simulated and
    its dev root CA is trusted besides Intel's. A simulated quote proves no TEE: dev only."""
