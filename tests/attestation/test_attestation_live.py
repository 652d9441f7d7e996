"""Live collateral (`attestation.live`) against a real HTTP PCCS on 127.0.0.1
(`attestation.providers.pccs`): first fetch, disk cache, refresh before nextUpdate, a PCCS
outage survived until the cached collateral expires, expiry refused with its reason."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SIM_NOW, Fixtures

from attestation.collateral import TcbInfo
from attestation.exceptions import CollateralExpired, CollateralFetchError
from attestation.fetch import PlatformId
from attestation.live import REFRESH_FAILED, LiveCollateral, collateral_expiry
from attestation.providers.pccs import SimulatedPccs
from attestation.providers.simulated import COLLATERAL_VALIDITY, SimulatedTdx
from attestation.quote import parse_quote
from attestation.verify import Verifier

DAY = 86400
START = SIM_NOW - SIM_NOW % DAY  # the simulated collateral is issued at the start of a day


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sim(clock: Clock) -> SimulatedTdx:
    return SimulatedTdx.generate(clock=clock)


@pytest.fixture
def pccs(sim: SimulatedTdx) -> Iterator[SimulatedPccs]:
    server = SimulatedPccs(lambda _fmspc: sim.collateral()).start()
    yield server
    server.stop()


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, event: str, platform: PlatformId, detail: str) -> None:
        self.seen.append((event, detail))

    def names(self) -> list[str]:
        return [e for e, _ in self.seen]


def _live(pccs: SimulatedPccs, clock: Clock, tmp_path: Path, events: Events) -> LiveCollateral:
    return LiveCollateral(
        pccs.url,
        cache_dir=tmp_path / "cache",
        clock=clock,
        refresh_margin=2 * DAY,
        max_age=60 * DAY,
        retry_interval=600,
        on_event=events,
    )


def test_first_use_fetches_and_caches_on_disk_privately(
    sim: SimulatedTdx, pccs: SimulatedPccs, clock: Clock, tmp_path: Path
) -> None:
    events = Events()
    live = _live(pccs, clock, tmp_path, events)
    quote = sim.quote(bytes(64))
    got = live.for_quote(quote, clock.now)
    assert got == sim.collateral()
    assert "/tdx/certification/v4/tcb" in pccs.requests
    Verifier([sim.root_der]).verify(quote, got, now=clock.now)
    folder = tmp_path / "cache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [cached] = list(folder.iterdir())
    assert cached.name == "tdx-4E4F58000000-platform.json"
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    # a restarted service reads the cache: no request while the PCCS is down
    pccs.stop()
    again = _live(pccs, clock, tmp_path, Events())
    assert again.for_quote(quote, clock.now) == got
    live.close()
    again.close()


def test_refreshed_in_the_background_before_next_update(
    sim: SimulatedTdx, pccs: SimulatedPccs, clock: Clock, tmp_path: Path
) -> None:
    live = _live(pccs, clock, tmp_path, Events())
    quote = sim.quote(bytes(64))
    first = live.for_quote(quote, clock.now)
    expires = collateral_expiry(first)
    assert expires == START + COLLATERAL_VALIDITY
    [state] = live.status().values()
    assert state["refresh_at"] == expires - 2 * DAY
    clock.now = expires - 2 * DAY - 1
    live.refresh_due()
    assert live.for_quote(quote, clock.now) == first  # not due yet: nothing fetched
    requests = len(pccs.requests)
    clock.now = expires - 2 * DAY
    live.refresh_due()
    assert len(pccs.requests) == requests + 4
    second = live.for_quote(quote, clock.now)
    assert collateral_expiry(second) > expires  # the PCCS's newer collateral
    assert TcbInfo.parse(second.tcb_info).issue_date > TcbInfo.parse(first.tcb_info).issue_date
    live.close()


def test_an_outage_is_survived_until_the_cache_expires_then_refused_with_its_reason(
    sim: SimulatedTdx, pccs: SimulatedPccs, clock: Clock, tmp_path: Path
) -> None:
    events = Events()
    live = _live(pccs, clock, tmp_path, events)
    quote = sim.quote(bytes(64))
    cached = live.for_quote(quote, clock.now)
    expires = collateral_expiry(cached)
    pccs.stop()  # the outage: connections are refused from now on
    clock.now = expires - DAY
    live.refresh_due()
    assert REFRESH_FAILED in events.names()
    [state] = live.status().values()
    assert state["last_error"] == "COLLATERAL_FETCH_FAILED"
    # still served from the cache, and quotes still verify
    assert live.for_quote(quote, clock.now) == cached
    Verifier([sim.root_der]).verify(quote, cached, now=clock.now)
    clock.now = expires
    with pytest.raises(CollateralExpired) as err:
        live.for_quote(quote, clock.now)
    assert err.value.reason == "COLLATERAL_EXPIRED"
    assert "cannot be refreshed: COLLATERAL_FETCH_FAILED" in str(err.value)
    live.close()


def test_unknown_platform_without_a_pccs_is_a_fetch_error(
    sim: SimulatedTdx, pccs: SimulatedPccs, clock: Clock, tmp_path: Path
) -> None:
    pccs.stop()
    live = _live(pccs, clock, tmp_path, Events())
    with pytest.raises(CollateralFetchError):
        live.for_quote(sim.quote(bytes(64)), clock.now)
    live.close()


def test_a_watched_peer_platform_is_fetched_by_the_background_thread(
    sim: SimulatedTdx, pccs: SimulatedPccs, clock: Clock, tmp_path: Path
) -> None:
    fetched = threading.Event()

    def on_event(event: str, platform: PlatformId, detail: str) -> None:
        if event == "fetched":
            fetched.set()

    live = LiveCollateral(pccs.url, clock=clock, poll_interval=3600, on_event=on_event)
    live.start()
    try:
        live.watch(sim.quote(bytes(64)))  # a peer registered with this quote
        assert fetched.wait(timeout=30)
        assert pccs.requests.count("/tdx/certification/v4/tcb") == 1
        assert list(live.status()) == ["tdx-4E4F58000000-platform"]
    finally:
        live.close()


def test_real_fixture_collateral_through_a_local_pccs(fx: Fixtures, intel_root: bytes) -> None:
    case = fx.case("dcapqvl-tdx-v4")
    served = fx.collateral(case["collateral"])
    pccs = SimulatedPccs.for_collateral(served).start()
    try:
        live = LiveCollateral(pccs.url, clock=lambda: case["now"])
        quote = parse_quote(fx.quote(case["quote"]))
        got = live.for_quote(quote, case["now"])
        assert got == served
        verified = Verifier([intel_root]).verify(quote, got, now=case["now"])
        assert verified.status == case["status"]
        live.close()
    finally:
        pccs.stop()


def test_watching_a_malformed_quote_never_raises(fx: Fixtures, sim: SimulatedTdx) -> None:
    """`watch` runs inside the registry view's event processing: a peer's garbage quote must
    not stop the view (it is refused when verified)."""
    live = LiveCollateral("http://127.0.0.1:9", clock=lambda: SIM_NOW)
    quote = sim.quote(bytes(64))
    start = quote.find(b"-----BEGIN CERTIFICATE-----")
    for i in range(start + 40, len(quote), 97):  # inside the PCK chain's base64 and beyond
        mutated = bytearray(quote)
        mutated[i] ^= 0x41
        live.watch(bytes(mutated))
    for case in fx.negative:
        live.watch(fx.negative_quote(case))
    live.watch(b"\x04\x00" + bytes(100))
    live.close()
