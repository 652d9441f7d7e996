"""configfs-tsm provider against a fake kernel behind a real directory in tmp_path."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import SIM_NOW

from attestation.exceptions import ProviderBusy, ProviderError
from attestation.providers.configfs import ConfigfsTsm, OsFs
from attestation.providers.simulated import SimulatedTdx
from attestation.verify import verify_quote


class FakeKernel(OsFs):
    """Mimics the tdx_guest configfs-tsm driver on plain files (the real I/O path is used)."""

    def __init__(self, sim: SimulatedTdx, provider: bytes = b"tdx_guest\n") -> None:
        self.sim = sim
        self.provider = provider
        self.busy_writes = 0  # EBUSY answers to inblob writes still to give
        self.races = 0  # times another writer bumps the generation during a quote
        self.entries: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.entries.append(path)
        (path / "provider").write_bytes(self.provider)
        (path / "generation").write_bytes(b"0\n")
        (path / "inblob").write_bytes(b"")
        (path / "outblob").write_bytes(b"")

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)

    def _bump(self, entry: Path) -> None:
        gen = int((entry / "generation").read_bytes())
        (entry / "generation").write_bytes(f"{gen + 1}\n".encode())

    def write(self, path: Path, data: bytes) -> None:
        if path.name == "inblob":
            if self.busy_writes:
                self.busy_writes -= 1
                raise OSError(errno.EBUSY, "Device or resource busy")
            if len(data) > 64:
                raise OSError(errno.EINVAL, "Invalid argument")
            super().write(path, data)
            self._bump(path.parent)
            return
        raise OSError(errno.EACCES, "read-only attribute")

    def read(self, path: Path) -> bytes:
        if path.name == "outblob":
            inblob = (path.parent / "inblob").read_bytes()
            if self.races:
                self.races -= 1
                self._bump(path.parent)  # someone else wrote inblob meanwhile
            return self.sim.quote(inblob.ljust(64, b"\x00"))
        return super().read(path)


@pytest.fixture
def tsm_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tsm" / "report"
    path.mkdir(parents=True)
    return path


def _provider(tsm_dir: Path, kernel: FakeKernel) -> tuple[ConfigfsTsm, list[float]]:
    sleeps: list[float] = []
    return ConfigfsTsm(tsm_dir, fs=kernel, sleep=sleeps.append, attempts=4), sleeps


def test_quote_carries_the_report_data_and_verifies(tsm_dir: Path, sim: SimulatedTdx) -> None:
    kernel = FakeKernel(sim)
    provider, sleeps = _provider(tsm_dir, kernel)
    assert provider.available()
    rd = bytes(range(64))
    quote = provider.quote(rd)
    v = verify_quote(quote, sim.collateral(), now=SIM_NOW, trusted_roots=[sim.root_der])
    assert v.quote.report_data == rd
    assert sleeps == []
    assert list(tsm_dir.iterdir()) == []  # the entry was removed


def test_ebusy_is_retried_with_backoff(tsm_dir: Path, sim: SimulatedTdx) -> None:
    kernel = FakeKernel(sim)
    kernel.busy_writes = 2
    provider, sleeps = _provider(tsm_dir, kernel)
    assert provider.quote(bytes(64))
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0]
    assert len(kernel.entries) == 3
    assert list(tsm_dir.iterdir()) == []


def test_generation_race_is_detected_and_retried(tsm_dir: Path, sim: SimulatedTdx) -> None:
    kernel = FakeKernel(sim)
    kernel.races = 1
    provider, sleeps = _provider(tsm_dir, kernel)
    assert provider.quote(bytes(64))
    assert len(sleeps) == 1


def test_gives_up_when_always_busy(tsm_dir: Path, sim: SimulatedTdx) -> None:
    kernel = FakeKernel(sim)
    kernel.busy_writes = 100
    provider, sleeps = _provider(tsm_dir, kernel)
    with pytest.raises(ProviderBusy):
        provider.quote(bytes(64))
    assert len(sleeps) == 4
    assert list(tsm_dir.iterdir()) == []


def test_wrong_provider_is_refused(tsm_dir: Path, sim: SimulatedTdx) -> None:
    provider, _ = _provider(tsm_dir, FakeKernel(sim, provider=b"sev_guest\n"))
    with pytest.raises(ProviderError) as info:
        provider.quote(bytes(64))
    assert info.value.field == "configfs_tsm.provider"


def test_report_data_must_be_64_bytes(tsm_dir: Path, sim: SimulatedTdx) -> None:
    provider, _ = _provider(tsm_dir, FakeKernel(sim))
    with pytest.raises(ProviderError):
        provider.quote(bytes(65))


def test_missing_configfs_is_reported(tmp_path: Path) -> None:
    provider = ConfigfsTsm(tmp_path / "absent")
    assert not provider.available()
    with pytest.raises(ProviderError) as info:
        provider.quote(bytes(64))
    assert info.value.field == "configfs_tsm.entry"


async def test_async_quote(tsm_dir: Path, sim: SimulatedTdx) -> None:
    provider, _ = _provider(tsm_dir, FakeKernel(sim))
    assert len(await provider.aquote(bytes(64))) > 1000
