"""The one attestation bootstrap (`nox.attest`): every service's settings are the shared
`AttestationSettings`; what it builds from them (roots, policy, collateral source); the
policy in force as a start-up log line and a metric; a PCCS outage as a log line and a
metric."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from structlog.testing import capture_logs

from attestation.exceptions import AttestationError
from attestation.providers.pccs import SimulatedPccs
from attestation.providers.simulated import SimulatedTdx
from attestation.roots import intel_sgx_root_ca
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.gateway.config import GatewaySettings
from nox.kms.config import InvalidKmsSettings, KmsSettings
from nox.orchestrator.cli import IngestorServiceSettings, OrchestratorServiceSettings
from nox.runner.config import RunnerSettings

DAY = 86400
FIELDS = set(AttestationSettings.model_fields)


def _kms(**values: object) -> KmsSettings:
    return KmsSettings.load(
        None, registry_address="0x" + "11" * 20, share_file=Path("s"), kek_file=Path("k"), **values
    )


SERVICES = {
    "NOX_RUNNER_": RunnerSettings,
    "NOX_ORCHESTRATOR_": OrchestratorServiceSettings,
    "NOX_INGESTOR_": IngestorServiceSettings,
    "NOX_GATEWAY_": GatewaySettings,
    "NOX_KMS_": _kms,
}


@pytest.mark.parametrize("prefix", sorted(SERVICES))
def test_every_service_reads_the_same_attestation_settings(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}PCCS_URL", "https://pccs.example:8081")
    monkeypatch.setenv(f"{prefix}TCB_POLICY_OUT_OF_DATE_GRACE_SECONDS", str(30 * DAY))
    monkeypatch.setenv(f"{prefix}TCB_POLICY_DENIED_ADVISORIES", '["INTEL-SA-00615"]')
    settings = SERVICES[prefix]()
    assert isinstance(settings, AttestationSettings)
    assert set(type(settings).model_fields) >= FIELDS
    assert settings.pccs_url == "https://pccs.example:8081"
    assert settings.dangerous_simulated_tdx_dir is None
    policy = build_attestation(settings).policy
    assert policy.out_of_date_grace == 30 * DAY
    assert policy.rejected_advisories == {"INTEL-SA-00615"}
    assert policy.allowed_statuses == {"UpToDate"}


def test_the_old_per_service_names_are_gone() -> None:
    for old in ("quote_provider", "simulated_tdx_dir", "collateral_file", "trusted_root_files"):
        for factory in SERVICES.values():
            with pytest.raises((ValidationError, InvalidKmsSettings)):
                factory(**{old: "x"})


def test_production_trusts_intel_only_and_fetches_from_the_pccs() -> None:
    attestation = build_attestation(AttestationSettings(pccs_url="http://127.0.0.1:9"))
    assert attestation.trusted_roots == (intel_sgx_root_ca(),)
    assert attestation.simulated is None
    assert attestation.live is not None
    assert attestation.describe()["collateral_source"] == "http://127.0.0.1:9"
    assert attestation.describe()["roots"] == "intel"
    attestation.close()


def test_the_policy_in_force_is_logged_once_and_exposed_as_a_metric() -> None:
    attestation = build_attestation(
        AttestationSettings(
            tcb_policy_allow_sw_hardening_needed=True,
            tcb_policy_out_of_date_grace_seconds=DAY,
        )
    )
    with capture_logs() as logs:
        from nox.rpc.logging import get_logger

        attestation.log_policy(get_logger("nox.test"), service="gateway")
    [line] = logs
    assert line["event"] == "attestation.policy"
    assert line["allowed_tcb_statuses"] == ["SWHardeningNeeded", "UpToDate"]
    assert line["out_of_date_grace_seconds"] == DAY
    assert line["revoked"] == "never"
    registry = CollectorRegistry()
    attestation.register_metrics(registry)
    labels = {
        "allowed_statuses": "SWHardeningNeeded,UpToDate",
        "out_of_date_grace_seconds": str(DAY),
        "denied_advisories": "",
        "roots": "intel",
    }
    assert registry.get_sample_value("nox_attestation_tcb_policy_info", labels) == 1.0
    attestation.close()


def test_a_pccs_outage_is_a_log_line_and_a_metric(tmp_path: Path) -> None:
    sim = SimulatedTdx.create(tmp_path / "dev-tdx")
    now = int(sim.clock())
    pccs = SimulatedPccs(lambda _f: sim.collateral(now=now)).start()
    settings = AttestationSettings(
        pccs_url=pccs.url,
        dangerous_simulated_tdx_dir=tmp_path / "dev-tdx",
        collateral_cache_dir=tmp_path / "cache",
    )
    attestation = build_attestation(settings, clock=lambda: now)
    registry = CollectorRegistry()
    attestation.register_metrics(registry)
    quote = sim.quote(bytes(64))
    assert attestation.verify(quote, now).status == "UpToDate"
    label = {"platform": "tdx-4E4F58000000-platform"}
    expires = registry.get_sample_value("nox_attestation_collateral_expires_at_seconds", label)
    assert expires is not None
    assert expires > now
    pccs.stop()
    assert attestation.live is not None
    with capture_logs() as logs:
        attestation.live.refresh_due(int(expires) - 1)  # due, and the PCCS is down
    assert [e["event"] for e in logs] == ["attestation.collateral_refresh_failed"]
    assert (
        registry.get_sample_value("nox_attestation_collateral_refresh_failures_total", label) == 1.0
    )
    # survived: the cached collateral still verifies quotes until it expires
    assert attestation.verify(quote, int(expires) - 1).status == "UpToDate"
    with pytest.raises(AttestationError) as err:
        attestation.verify(quote, int(expires))
    assert err.value.reason == "COLLATERAL_EXPIRED"
    attestation.close()
