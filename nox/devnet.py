"""`noxctl devnet`: the whole network on one machine, on embedded defaults.

It grows as the services land; today it brings up the bundled NATS JetStream server that the
ingestor and orchestrators share, reports its endpoint and runs until interrupted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from nox.queue.server import NatsServerProcess


def run_devnet(args: argparse.Namespace) -> int:
    duration: float | None = getattr(args, "duration", None)
    with tempfile.TemporaryDirectory(prefix="nox-devnet-") as state:
        print("devnet: starting NATS JetStream (bundled nats-server)", flush=True)
        nats = NatsServerProcess(Path(state))
        try:
            nats.start()
            print(f"devnet: NATS  {nats.url}", flush=True)
            print("devnet: ready (Ctrl-C stops it)", flush=True)
            deadline = None if duration is None else time.monotonic() + duration
            while deadline is None or time.monotonic() < deadline:
                if not nats.running:
                    print("devnet: nats-server exited", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            nats.stop()
    print("devnet: stopped", flush=True)
    return 0
