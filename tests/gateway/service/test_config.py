"""GatewaySettings from NOX_GATEWAY_* variables, the CLI entry, and health."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_servers import GatewayNet
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from nox.cli import build_parser
from nox.gateway.config import GatewaySettings
from nox.gateway.server import _serve_gateway


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOX_GATEWAY_PORT", "0")
    monkeypatch.setenv("NOX_GATEWAY_STORE_URL", "postgresql://db/nox")
    monkeypatch.setenv("NOX_GATEWAY_KMS_ENDPOINTS", '["127.0.0.1:1", "127.0.0.1:2"]')
    monkeypatch.setenv("NOX_GATEWAY_COMPUTE_ADDRESS", "0x" + "ab" * 20)
    monkeypatch.setenv("NOX_GATEWAY_PUBLIC_BURST", "7")
    monkeypatch.setenv("NOX_GATEWAY_MAX_BATCH_HANDLES", "10")
    settings = GatewaySettings()
    assert settings.port == 0
    assert settings.store_url == "postgresql://db/nox"
    assert settings.kms_endpoints == ("127.0.0.1:1", "127.0.0.1:2")
    assert settings.public_burst == 7
    assert settings.limits.max_batch_handles == 10
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOX_GATEWAY_COMPUTE_ADDRESS", "0x1234"),
        ("NOX_GATEWAY_CHAIN_ID", str(2**32)),
        ("NOX_GATEWAY_MAX_AUTHORIZATION_SECONDS", "3601"),
        ("NOX_GATEWAY_PORT", "70000"),
        ("NOX_GATEWAY_NO_SUCH_SETTING", "1"),
    ],
)
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    if name == "NOX_GATEWAY_NO_SUCH_SETTING":
        # unknown variables in the environment are ignored; unknown fields passed are not
        GatewaySettings()
        with pytest.raises(ValidationError):
            GatewaySettings(no_such_setting=1)  # type: ignore[call-arg]
        return
    with pytest.raises(ValidationError):
        GatewaySettings()


def test_noxctl_serve_gateway_is_registered() -> None:
    args = build_parser().parse_args(["serve", "gateway"])
    assert args.func is _serve_gateway


async def test_health_reports_the_gateway_serving(gw: GatewayNet) -> None:
    health = health_pb2_grpc.HealthStub(gw.channel)
    for service in ("", "nox.v1.GatewayService"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
