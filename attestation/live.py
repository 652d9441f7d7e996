"""Live collateral: fetched from a PCCS or Intel PCS, cached on disk, refreshed before expiry.

`LiveCollateral` keeps one collateral per platform (TEE, FMSPC, PCK CA). A platform is
fetched the first time a quote of it is seen (`watch` when a peer registers, or `for_quote`
when a quote is verified), then refreshed in the background before the earliest nextUpdate
of its TCB info, QE identity and CRLs (`refresh_margin` seconds ahead, and at least every
`max_age` seconds, since Intel may publish a TCB recovery before nextUpdate).

A failed refresh (PCCS outage) keeps the cached collateral and is retried every
`retry_interval` seconds; it is reported through `on_event` (the service logs it and counts
it in a metric). Once the cached collateral expires, quotes of its platform are refused with
CollateralExpired until a refresh succeeds.

The disk cache (one JSON file per platform, 0600, in a 0700 folder) is not trusted: every
item is signed, and the verifier checks the signatures and windows at every use. A tampered
file costs at most a refetch (it fails to decode) or a refusal (it fails to verify).
The network I/O is the injected blocking `httpx.Client`; the clock is injected too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from cryptography import x509

from attestation.collateral import Collateral, QeIdentity, TcbInfo
from attestation.exceptions import AttestationError, CollateralExpired, CollateralFetchError
from attestation.fetch import INTEL_PCS_URL, PlatformId, download_collateral, root_ca_crl_url_for
from attestation.quote import Quote, parse_quote

#: `on_event(event, platform, detail)`: "fetched", "refresh_failed", "expired", "cache_invalid".
EventHook = Callable[[str, PlatformId, str], None]

FETCHED: Final = "fetched"
REFRESH_FAILED: Final = "refresh_failed"
EXPIRED: Final = "expired"
CACHE_INVALID: Final = "cache_invalid"


def collateral_expiry(collateral: Collateral) -> int:
    """The earliest nextUpdate of the TCB info, QE identity and both CRLs (Unix seconds)."""
    ends = [
        TcbInfo.parse(collateral.tcb_info).next_update,
        QeIdentity.parse(collateral.qe_identity).next_update,
    ]
    for der in (collateral.pck_crl, collateral.root_ca_crl):
        try:
            nxt = x509.load_der_x509_crl(der).next_update_utc
        except ValueError:
            raise CollateralFetchError("crl", "served CRL is not DER") from None
        if nxt is not None:
            ends.append(int(nxt.timestamp()))
    return min(ends)


def platform_label(platform: PlatformId) -> str:
    """`tdx-<FMSPC>-<ca>`: the platform's cache file stem and metric label."""
    return f"{'tdx' if platform.tdx else 'sgx'}-{platform.fmspc.hex().upper()}-{platform.ca}"


@dataclass(slots=True)
class _Entry:
    collateral: Collateral
    expires_at: int
    refresh_at: int
    last_error: str = ""


class LiveCollateral:
    """Collateral per platform from `base_url`; see the module docstring."""

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        cache_dir: Path | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: int = 6 * 3600,
        max_age: int = 86400,
        retry_interval: int = 60,
        poll_interval: float = 10.0,
        on_event: EventHook | None = None,
        root_ca_crl_url: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root_crl_url = root_ca_crl_url or root_ca_crl_url_for(self.base_url)
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._clock = clock
        self._margin = refresh_margin
        self._max_age = max_age
        self._retry = retry_interval
        self._poll = poll_interval
        self._on_event = on_event or (lambda event, platform, detail: None)
        self._cache_dir = cache_dir
        self._entries: dict[PlatformId, _Entry] = {}
        self._wanted: set[PlatformId] = set()
        self._lock = threading.RLock()
        self._fetch_locks: dict[PlatformId, threading.Lock] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if cache_dir is not None:
            cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            cache_dir.chmod(0o700)

    # ------------------------------------------------------------------ queries

    def for_quote(self, quote: bytes | Quote, now: int) -> Collateral:
        """The current collateral of the platform that produced `quote` (see `get`)."""
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        return self.get(PlatformId.of(q), now)

    def get(self, platform: PlatformId, now: int) -> Collateral:
        """The platform's collateral valid at `now`: cached, else fetched now (blocking).

        Raises CollateralExpired when the cached collateral has expired and cannot be
        refreshed, CollateralFetchError when there is none and it cannot be fetched.
        """
        entry = self._entry(platform)
        if entry is not None and now < entry.expires_at:
            return entry.collateral
        try:
            return self._fetch(platform, now).collateral
        except AttestationError as exc:
            if entry is None:
                raise
            self._on_event(EXPIRED, platform, f"expired at {entry.expires_at}")
            raise CollateralExpired(
                f"collateral[{platform_label(platform)}]",
                f"cached collateral expired at {entry.expires_at} (now {now}) and cannot be "
                f"refreshed: {exc.reason}",
            ) from None

    def watch(self, quote: bytes | Quote) -> None:
        """A peer with this quote appeared: fetch its platform's collateral in the background
        (or at the next `refresh_due` without a background thread). Never raises."""
        try:
            q = quote if isinstance(quote, Quote) else parse_quote(quote)
            platform = PlatformId.of(q)
        except AttestationError:
            return  # a bad quote is refused when it is verified; nothing to fetch
        with self._lock:
            if platform in self._entries or platform in self._wanted:
                return
            self._wanted.add(platform)
        self._wake.set()

    def status(self) -> dict[str, dict[str, object]]:
        """Per platform: when its collateral expires, when it is refreshed, the last error."""
        with self._lock:
            return {
                platform_label(p): {
                    "expires_at": e.expires_at,
                    "refresh_at": e.refresh_at,
                    "last_error": e.last_error,
                }
                for p, e in self._entries.items()
            }

    # ------------------------------------------------------------------ refresh

    def refresh_due(self, now: int | None = None) -> None:
        """One background pass: fetch watched platforms, refresh those whose time came."""
        now = int(self._clock()) if now is None else now
        with self._lock:
            wanted = list(self._wanted)
            due = [p for p, e in self._entries.items() if now >= e.refresh_at]
        for platform in wanted + due:
            try:
                self._fetch(platform, now)
            except AttestationError as exc:
                self._failed(platform, now, exc)
            finally:
                with self._lock:
                    self._wanted.discard(platform)

    def start(self) -> None:
        """Refresh in a daemon thread until `close`."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="collateral-refresh", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll + 5)
            self._thread = None
        if self._owns_client:
            self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh_due()
            self._wake.wait(self._poll)
            self._wake.clear()

    def _failed(self, platform: PlatformId, now: int, exc: AttestationError) -> None:
        with self._lock:
            entry = self._entries.get(platform)
            if entry is not None:
                entry.last_error = exc.reason
                entry.refresh_at = now + self._retry
        self._on_event(REFRESH_FAILED, platform, f"{exc.reason}: {exc.message}")

    def _fetch(self, platform: PlatformId, now: int) -> _Entry:
        lock = self._fetch_locks.setdefault(platform, threading.Lock())
        with lock:
            entry = self._entries.get(platform)
            if entry is not None and now < entry.refresh_at and now < entry.expires_at:
                return entry  # another caller refreshed it meanwhile
            collateral = download_collateral(
                self._client, self.base_url, platform, root_crl_url=self._root_crl_url
            )
            entry = self._store(platform, collateral, now)
        self._on_event(FETCHED, platform, f"valid until {entry.expires_at}")
        return entry

    def _store(self, platform: PlatformId, collateral: Collateral, now: int) -> _Entry:
        expires = collateral_expiry(collateral)
        refresh = min(expires - self._margin, now + self._max_age)
        if refresh <= now:  # shorter-lived than the margin: refresh half-way to expiry
            refresh = now + max(1, (expires - now) // 2)
        entry = _Entry(collateral, expires, refresh)
        with self._lock:
            self._entries[platform] = entry
        self._write(platform, collateral)
        return entry

    # ------------------------------------------------------------------ disk cache

    def _path(self, platform: PlatformId) -> Path | None:
        if self._cache_dir is None:
            return None
        return self._cache_dir / f"{platform_label(platform)}.json"

    def _write(self, platform: PlatformId, collateral: Collateral) -> None:
        path = self._path(platform)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(collateral.to_json())
        os.replace(tmp, path)

    def _entry(self, platform: PlatformId) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(platform)
        if entry is not None:
            return entry
        path = self._path(platform)
        if path is None or not path.exists():
            return None
        try:
            collateral = Collateral.from_json(path.read_bytes())
            expires = collateral_expiry(collateral)
        except (AttestationError, OSError) as exc:
            self._on_event(CACHE_INVALID, platform, repr(exc))
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        now = int(self._clock())
        refresh = min(expires - self._margin, now + self._max_age)
        entry = _Entry(collateral, expires, max(refresh, now))
        with self._lock:
            self._entries.setdefault(platform, entry)
            return self._entries[platform]


__all__ = ["LiveCollateral", "collateral_expiry", "platform_label"]
