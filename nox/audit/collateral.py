"""Where the registry audit gets each quote's collateral: given files, or a PCCS / Intel PCS.

Collateral is per platform (FMSPC and TEE type). Files given with `--collateral` are matched
to a quote by the FMSPC of its PCK certificate; with `--pccs` the collateral of every
distinct platform is fetched once, before verification (the only network I/O, through
`attestation.fetch.CollateralFetcher`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from attestation import AttestationError, Collateral, parse_quote
from attestation.collateral import TcbInfo
from attestation.fetch import CollateralFetcher, PlatformId
from nox.audit.exceptions import AuditInputError, CollateralUnavailable

#: `collateral_for(raw_quote)` returns the collateral to verify it with, or raises
#: CollateralUnavailable (or an AttestationError when the quote cannot be parsed).
CollateralSource = Callable[[bytes], Collateral]


def _platform(raw: bytes) -> PlatformId:
    return PlatformId.of(parse_quote(raw))


class CollateralSet:
    """Collateral for a fixed set of platforms, selected by FMSPC and TEE type."""

    def __init__(self, collaterals: Iterable[Collateral]) -> None:
        self._by_platform: dict[tuple[bool, bytes], Collateral] = {}
        for c in collaterals:
            try:
                info = TcbInfo.parse(c.tcb_info)
            except AttestationError as exc:
                raise AuditInputError(f"collateral has an unreadable TCB info: {exc}") from None
            self._by_platform[(info.id == "TDX", info.fmspc)] = c

    def __call__(self, raw_quote: bytes) -> Collateral:
        platform = _platform(raw_quote)
        found = self._by_platform.get((platform.tdx, platform.fmspc))
        if found is None:
            raise CollateralUnavailable(
                f"no collateral for FMSPC {platform.fmspc.hex().upper()}",
                metadata={"fmspc": platform.fmspc.hex()},
            )
        return found


def fetch_collateral(
    quotes: Sequence[bytes], fetcher_factory: Callable[[], CollateralFetcher]
) -> CollateralSet:
    """Fetch the collateral of every distinct platform among `quotes`. Unparseable quotes
    and platforms whose fetch fails are skipped: their verification then reports the parse
    error or COLLATERAL_UNAVAILABLE for those nodes only."""
    platforms: dict[PlatformId, None] = {}
    for raw in quotes:
        try:
            platforms[_platform(raw)] = None
        except AttestationError:
            continue

    async def run() -> list[Collateral]:
        fetcher = fetcher_factory()
        try:
            found = []
            for platform in platforms:
                try:
                    found.append(await fetcher.fetch(platform))
                except AttestationError:
                    continue
            return found
        finally:
            await fetcher.aclose()

    return CollateralSet(asyncio.run(run()))
