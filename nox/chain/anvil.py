"""Run anvil (npm `@foundry-rs/anvil`, pinned in package.json) as a local JSON-RPC chain.

Used by tests and by `noxctl` devnet commands that need chain state shared between
processes. Anvil picks a free port (`--port 0`); we read the address and its dev keys from its
start-up banner.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from nox.chain.backend import DEV_CHAIN_ID, RpcChain
from nox.chain.exceptions import ChainUnavailable

_REPO_BIN = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"
_LISTEN = re.compile(r"Listening on ([0-9.]+):(\d+)")
_KEY = re.compile(r"^\(\d+\) (0x[0-9a-fA-F]{64})\s*$")


def anvil_binary() -> str:
    if _REPO_BIN.exists():
        return str(_REPO_BIN)
    found = shutil.which("anvil")
    if found is None:
        raise ChainUnavailable("anvil not found (run ./scripts/bootstrap)")
    return found


@dataclass
class AnvilProcess:
    """A running anvil; `url` and funded `private_keys` once started. Use as a context manager."""

    chain_id: int = DEV_CHAIN_ID
    hardfork: str = "prague"
    accounts: int = 10
    """Funded dev accounts (anvil's `--accounts`); their keys are `private_keys`."""
    startup_timeout: float = 60.0
    url: str = ""
    private_keys: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None

    def start(self) -> AnvilProcess:
        cmd = [
            anvil_binary(),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--chain-id",
            str(self.chain_id),
            "--hardfork",
            self.hardfork,
            "--accounts",
            str(self.accounts),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()
        keys: list[str] = []

        def read() -> None:
            proc = self._proc
            if proc is None or proc.stdout is None:
                return
            for line in proc.stdout:
                key = _KEY.match(line.strip())
                if key:
                    keys.append(key.group(1))
                listen = _LISTEN.search(line)
                if listen:
                    self.url = f"http://{listen.group(1)}:{listen.group(2)}"
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True, name="anvil-stdout").start()
        if not ready.wait(self.startup_timeout) or not self.url:
            self.stop()
            raise ChainUnavailable("anvil did not start")
        self.private_keys = keys
        return self

    def backend(self) -> RpcChain:
        return RpcChain(self.url, private_keys=self.private_keys)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> AnvilProcess:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
