"""Runner settings from NOX_RUNNER_*, per-process settings, and the `serve runner` command."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nox.cli import build_parser
from nox.runner.config import RunnerSettings
from nox.runner.server import _serve_runner


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOX_RUNNER_CAPACITY", "8")
    monkeypatch.setenv("NOX_RUNNER_MAX_OPERATIONS", "12")
    monkeypatch.setenv("NOX_RUNNER_AUTO_REGISTER", "false")
    settings = RunnerSettings()
    assert settings.agent_settings().capacity == 8
    assert settings.agent_settings().auto_register is False
    assert settings.limits().max_operations == 12


def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOX_RUNNER_CAPACITY", "0")
    with pytest.raises(ValidationError):
        RunnerSettings()
    with pytest.raises(ValidationError):
        RunnerSettings(quote_provider="simulated")  # type: ignore[call-arg]  # old name: gone
    with pytest.raises(ValidationError):
        RunnerSettings(unknown_field=1)  # type: ignore[call-arg]


def test_each_process_gets_its_own_status_port() -> None:
    settings = RunnerSettings(processes=3, status_port=50060)
    ports = [settings.for_process(i).status_port for i in range(3)]
    assert ports == [50060, 50061, 50062]
    assert {settings.for_process(i).processes for i in range(3)} == {1}
    assert RunnerSettings(processes=2).for_process(1).status_port == 0  # free ports


def test_serve_runner_command(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["serve", "runner", "--processes", "4"])
    assert args.func is _serve_runner
    seen: list[RunnerSettings] = []
    monkeypatch.setattr("nox.runner.server.run", lambda s: seen.append(s) or 0)
    assert args.func(args) == 0
    assert seen[0].processes == 4
