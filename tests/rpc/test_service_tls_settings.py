"""Every service takes its TLS files from its own environment, under the same names:
`<PREFIX>_TLS_CERT_CHAIN` / `<PREFIX>_TLS_PRIVATE_KEY` where it serves, and
`<PREFIX>_<PEER>_TLS_ROOT_CERTIFICATES` for each peer it dials (docs/operations.md §4).
The settings reach the nox.rpc server and channel settings the serve commands use."""

from __future__ import annotations

from pathlib import Path

import pytest

from nox.gateway.config import GatewaySettings
from nox.gateway.server import kms_channel_settings, server_settings
from nox.kms.config import KmsSettings
from nox.orchestrator.cli import OrchestratorServiceSettings
from nox.rpc import ChannelSettings, ServerSettings
from nox.runner.config import RunnerSettings

CERT, KEY, ROOTS = Path("/etc/nox/tls/chain.pem"), Path("/etc/nox/tls/key.pem"), Path("/ca.pem")


def _serves_tls(settings: ServerSettings) -> None:
    assert (settings.tls_cert_chain, settings.tls_private_key) == (CERT, KEY)


def _trusts(settings: ChannelSettings) -> None:
    assert settings.tls_root_certificates == ROOTS


def _env(monkeypatch: pytest.MonkeyPatch, prefix: str, *peers: str) -> None:
    monkeypatch.setenv(f"{prefix}_TLS_CERT_CHAIN", str(CERT))
    monkeypatch.setenv(f"{prefix}_TLS_PRIVATE_KEY", str(KEY))
    for peer in peers:
        monkeypatch.setenv(f"{prefix}_{peer}_TLS_ROOT_CERTIFICATES", str(ROOTS))


def test_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, "NOX_GATEWAY", "KMS")
    settings = GatewaySettings()
    _serves_tls(server_settings(settings))
    _trusts(kms_channel_settings(settings))
    assert settings.dangerous_accept_plaintext_inputs is False


def test_kms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _env(monkeypatch, "NOX_KMS")
    settings = KmsSettings(
        registry_address="0x" + "11" * 20, share_file=tmp_path / "share", kek_passphrase="x"
    )
    _serves_tls(settings.server_settings())


def test_orchestrator(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, "NOX_ORCHESTRATOR", "GATEWAY")
    settings = OrchestratorServiceSettings()
    _serves_tls(settings.server_settings())
    _trusts(settings.gateway_channel_settings())


def test_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, "NOX_RUNNER", "ORCHESTRATOR", "GATEWAY")
    settings = RunnerSettings()
    _serves_tls(settings.status_server_settings())
    _trusts(settings.orchestrator_channel_settings())
    _trusts(settings.gateway_channel_settings())


def test_plaintext_by_default() -> None:
    assert GatewaySettings().kms_tls_root_certificates is None
    assert OrchestratorServiceSettings().gateway_channel_settings().tls_root_certificates is None
    runner = RunnerSettings()
    assert runner.status_server_settings().tls_cert_chain is None
    assert runner.gateway_channel_settings().tls_root_certificates is None
