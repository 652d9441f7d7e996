"""The CLI entry point and the devnet command as a user runs them."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from nox import __version__
from nox.cli import main


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"noxctl {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


@pytest.mark.integration
def test_devnet_starts_nats_and_stops_cleanly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nox.cli",
            "devnet",
            "--duration",
            "0.5",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "devnet: stopped" in proc.stdout
    # what it printed is what it wrote, and the NATS it started is gone again
    info = json.loads((tmp_path / "devnet.json").read_text())
    url = urlsplit(info["nats"])
    assert (url.scheme, url.hostname) == ("nats", "127.0.0.1")
    assert info["nats"] in proc.stdout
    with socket.socket() as probe:
        assert probe.connect_ex((url.hostname, url.port)) != 0, "nats-server still listening"
    assert stat.S_IMODE((tmp_path / "devnet.json").stat().st_mode) == 0o600
