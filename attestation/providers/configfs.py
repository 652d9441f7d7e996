"""TDX quotes from the Linux configfs-tsm interface (kernel >= 6.7, notes §4).

    mkdir  <path>/<entry>            the kernel creates provider, generation, inblob, outblob
    read   provider                  must be "tdx_guest"
    read   generation                g0
    write  inblob                    exactly 64 bytes of REPORTDATA; generation -> g0 + 1
    read   outblob                   the quote (TDG.MR.REPORT + GetQuote)
    read   generation                still g0 + 1, otherwise another writer raced us
    rmdir  <path>/<entry>

A generation mismatch or EBUSY (a GetQuote still in flight) is retried with back-off, as
Intel's libtdx_attest does. File-system access goes through `TsmFs` so tests can put a fake
kernel behind a real directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from attestation.exceptions import ProviderBusy, ProviderError

DEFAULT_PATH = "/sys/kernel/config/tsm/report"


class TsmFs(Protocol):
    """The four file-system operations the provider needs."""

    def mkdir(self, path: Path) -> None: ...
    def rmdir(self, path: Path) -> None: ...
    def read(self, path: Path) -> bytes: ...
    def write(self, path: Path, data: bytes) -> None: ...


class OsFs:
    """The real file system; `write` is one write(2) as configfs attributes require."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write", str(path))
        finally:
            os.close(fd)


class _Retry(Exception):
    """Internal: this attempt raced or hit EBUSY; try again."""


class ConfigfsTsm:
    """Quote provider over configfs-tsm."""

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        fs: TsmFs | None = None,
        attempts: int = 10,
        backoff: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        entry_name: Callable[[], str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._fs: TsmFs = fs or OsFs()
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._entry_name = entry_name or (lambda: f"nox-{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def available(self) -> bool:
        """Whether the configfs-tsm report directory exists (a TDX guest with the driver)."""
        return self.path.is_dir()

    async def aquote(self, report_data: bytes) -> bytes:
        """`quote` in a worker thread (GetQuote can block for seconds)."""
        return await asyncio.to_thread(self.quote, report_data)

    def quote(self, report_data: bytes) -> bytes:
        """A quote whose REPORTDATA is `report_data` (64 bytes)."""
        if len(report_data) != 64:
            raise ProviderError("report_data", "must be exactly 64 bytes")
        for attempt in range(self._attempts):
            try:
                return self._attempt(report_data)
            except _Retry:
                self._sleep(self._backoff * (2**attempt))
        raise ProviderBusy("configfs_tsm", f"busy or raced after {self._attempts} attempts")

    def _generation(self, entry: Path) -> int:
        raw = self._io(lambda: self._fs.read(entry / "generation"), "generation")
        try:
            return int(raw.strip())
        except ValueError:
            raise ProviderError("configfs_tsm.generation", f"not a number: {raw[:20]!r}") from None

    def _io(self, op: Callable[[], bytes], what: str) -> bytes:
        try:
            return op()
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EAGAIN):
                raise _Retry from None
            raise ProviderError(f"configfs_tsm.{what}", f"{exc.strerror or exc}") from None

    def _attempt(self, report_data: bytes) -> bytes:
        entry = self.path / self._entry_name()
        try:
            self._fs.mkdir(entry)
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EAGAIN):
                raise _Retry from None
            raise ProviderError("configfs_tsm.entry", f"cannot create {entry}: {exc}") from None
        try:
            provider = self._io(lambda: self._fs.read(entry / "provider"), "provider").strip()
            if provider != b"tdx_guest":
                raise ProviderError("configfs_tsm.provider", f"provider is {provider!r}")
            g0 = self._generation(entry)

            def write() -> bytes:
                self._fs.write(entry / "inblob", report_data)
                return b""

            self._io(write, "inblob")
            if self._generation(entry) != g0 + 1:
                raise _Retry  # another writer changed inblob between our read and write
            quote = self._io(lambda: self._fs.read(entry / "outblob"), "outblob")
            if self._generation(entry) != g0 + 1:
                raise _Retry  # inblob changed while the quote was generated
            if not quote:
                raise ProviderError("configfs_tsm.outblob", "empty quote")
            return quote
        finally:
            # The kernel drops an entry with its last reference anyway; a failed rmdir is moot.
            with contextlib.suppress(OSError):
                self._fs.rmdir(entry)
