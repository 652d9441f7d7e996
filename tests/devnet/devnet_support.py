"""A devnet running in a thread with its own event loop, for the real-client tests.

Tests talk to it as outsiders do (grpcurl, buf curl, noxctl in subprocesses); the only inside
access is `RunningDevnet.register`, standing in for an operator registering an enclave on the
chain, and `run` for coroutines that must run on the devnet's own loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from nox.crypto.keys import EnclaveKey
from nox.devnet.config import DevnetSettings
from nox.devnet.network import Devnet

T = TypeVar("T")


class RunningDevnet:
    """Start with `start()`, stop with `close()`; `info` is the devnet.json document."""

    def __init__(self, state_dir: Path) -> None:
        self.net = Devnet(DevnetSettings(state_dir=state_dir))
        self.info: dict[str, Any] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="devnet", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with self.net:
                self.info = json.loads((self.net.state_dir / "devnet.json").read_text())
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise

    def start(self, timeout: float = 120) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the devnet did not start in time")
        if self._error is not None:
            raise RuntimeError("the devnet failed to start") from self._error

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def endpoint(self, name: str) -> dict[str, str]:
        return next(e for e in self.info["endpoints"] if e["name"] == name)

    def register(self, key: EnclaveKey, role: int) -> None:
        """Register `key` in `role` on the devnet's chain (thread-safe: the chain's lock)."""
        assert self.net.chain is not None
        self.net.chain.register(key, role, "")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        """Run `coro` on the devnet's event loop (where its gRPC channels live)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
