"""The one attestation bootstrap: every service, the devnet, the benches and the tests build
their quote provider, collateral source, trusted roots, TCB policy and attested registry view
here, from `AttestationSettings`.

    attestation = build_attestation(settings)          # settings: a service's settings
    attestation.log_policy(log, service="gateway")     # the policy in force, one line
    view = attestation.registry_view(registry_client)  # peers' quotes verified + policy
    attestation.start()                                # background collateral refresh
    attestation.register_metrics(server.metrics.registry)
    ...
    attestation.close()

Production (no `dangerous_*` setting): quotes from configfs-tsm; peers' collateral live from
the PCCS (`attestation.live`: disk cache, background refresh, outage survived until expiry);
Intel's root CA only; the TCB policy of the settings. With `dangerous_simulated_tdx_dir`:
simulated quotes, and the dev root trusted besides Intel's (its collateral made in-process
unless a `pccs_url` serves it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from attestation import Policy, Quote, VerifiedQuote, Verifier, check_policy, parse_quote
from attestation.collateral import Collateral
from attestation.fetch import INTEL_PCS_URL, PlatformId
from attestation.live import (
    EXPIRED,
    FETCHED,
    REFRESH_FAILED,
    LiveCollateral,
    collateral_expiry,
    platform_label,
)
from attestation.policy import accepted_until
from attestation.providers.simulated import SimulatedTdx
from attestation.roots import intel_sgx_root_ca
from nox.attest.settings import AttestationSettings
from nox.chain.contracts import RegistryClient
from nox.chain.registry import RegistryView
from nox.rpc.logging import module_logger

#: `collateral_for(quote, now)`: the collateral to verify `quote` with at `now`.
CollateralFor = Callable[[Quote, int], Collateral]


class QuoteSource(Protocol):
    """Anything that returns a TDX quote carrying 64 bytes of report data."""

    def quote(self, report_data: bytes) -> bytes: ...


@dataclass
class _Metrics:
    policy: Gauge = field(
        default_factory=lambda: Gauge(
            "nox_attestation_tcb_policy_info",
            "The TCB policy this service applies to peers' quotes (value 1; see labels).",
            ("allowed_statuses", "out_of_date_grace_seconds", "denied_advisories", "roots"),
            registry=None,
        )
    )
    refresh_failures: Counter = field(
        default_factory=lambda: Counter(
            "nox_attestation_collateral_refresh_failures",
            "Failed collateral fetches (PCCS outage or bad answer), by platform.",
            ("platform",),
            registry=None,
        )
    )
    expires_at: Gauge = field(
        default_factory=lambda: Gauge(
            "nox_attestation_collateral_expires_at_seconds",
            "Unix time the cached collateral of a platform expires (earliest nextUpdate).",
            ("platform",),
            registry=None,
        )
    )


class Attestation:
    """What a service attests with and verifies peers with; built by `build_attestation`."""

    def __init__(
        self,
        *,
        provider: QuoteSource | None,
        collateral_for: CollateralFor,
        trusted_roots: tuple[bytes, ...],
        policy: Policy,
        live: LiveCollateral | None = None,
        simulated: SimulatedTdx | None = None,
        source: str = "",
    ) -> None:
        self._provider = provider
        self._collateral_for = collateral_for
        self.trusted_roots = trusted_roots
        self.policy = policy
        self.live = live
        self.simulated = simulated
        self.source = source
        self.verifier = Verifier(trusted_roots)
        self.metrics = _Metrics()
        self.metrics.policy.labels(**self._policy_labels()).set(1)
        self._log = module_logger("nox.attest")  # follows the logging configured later

    # ------------------------------------------------------------------ own quotes

    @property
    def provider(self) -> QuoteSource:
        """This service's quote provider (configfs-tsm, or the simulated TDX)."""
        if self._provider is None:
            from attestation.providers.configfs import ConfigfsTsm

            self._provider = ConfigfsTsm()
        return self._provider

    def quote(self, report_data: bytes) -> bytes:
        return self.provider.quote(report_data)

    # ------------------------------------------------------------------ peers

    def verify(self, quote: bytes | Quote, now: int) -> VerifiedQuote:
        """Verify a peer's quote against its platform's collateral and the trusted roots,
        then apply the TCB policy; raises an AttestationError naming the reason."""
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        verified = self.verifier.verify(q, self._collateral_for(q, now), now=now)
        check_policy(verified, self.policy, now=now)
        return verified

    def _verify_peer(self, quote: bytes, now: int) -> int:
        """The registry view's verifier: until when the verdict holds (collateral expiry or
        the end of an OutOfDate grace period), so a cached verdict never outlives either."""
        return accepted_until(self.verify(quote, now), self.policy)

    def watch(self, quote: bytes) -> None:
        """A peer registered with `quote`: fetch its platform's collateral ahead of use."""
        if self.live is not None:
            self.live.watch(quote)

    def registry_view(self, client: RegistryClient, **kwargs: Any) -> RegistryView:
        """The attested registry view: a peer counts as registered only if its quote
        verifies (roots, live collateral) and passes the TCB policy."""
        return RegistryView(client, verifier=self._verify_peer, on_quote=self.watch, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start refreshing collateral in the background (no-op without a PCCS)."""
        if self.live is not None:
            self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.close()

    def describe(self) -> dict[str, object]:
        """The policy in force, the trusted roots and the collateral source."""
        return {
            **self.policy.describe(),
            "roots": self._roots_label(),
            "collateral_source": self.source,
        }

    def log_policy(self, log: Any, *, service: str) -> None:
        """The one start-up line saying what this service accepts from its peers."""
        log.info("attestation.policy", service=service, **self.describe())

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Expose the policy (`nox_attestation_tcb_policy_info`) and the collateral metrics
        on a service's metrics registry (its gRPC server's)."""
        for metric in (self.metrics.policy, self.metrics.refresh_failures, self.metrics.expires_at):
            registry.register(metric)

    def _roots_label(self) -> str:
        return "intel" if self.simulated is None else "intel+simulated-dev"

    def _policy_labels(self) -> dict[str, str]:
        p = self.policy
        return {
            "allowed_statuses": ",".join(sorted(p.allowed_statuses)),
            "out_of_date_grace_seconds": "none"
            if p.out_of_date_grace is None
            else str(p.out_of_date_grace),
            "denied_advisories": ",".join(sorted(p.rejected_advisories)),
            "roots": self._roots_label(),
        }

    def on_collateral_event(self, event: str, platform: PlatformId, detail: str) -> None:
        """LiveCollateral's hook: a log line and the metrics for each fetch or failure."""
        label = platform_label(platform)
        if event == FETCHED and self.live is not None:
            expires = self.live.status().get(label, {}).get("expires_at")
            if isinstance(expires, int):
                self.metrics.expires_at.labels(platform=label).set(expires)
            self._log.info("attestation.collateral_fetched", platform=label, detail=detail)
        elif event == REFRESH_FAILED:
            self.metrics.refresh_failures.labels(platform=label).inc()
            self._log.warning("attestation.collateral_refresh_failed", platform=label, error=detail)
        elif event == EXPIRED:
            self._log.error("attestation.collateral_expired", platform=label, detail=detail)
        else:
            self._log.warning(
                "attestation.collateral_cache", platform=label, kind=event, detail=detail
            )


def policy_of(settings: AttestationSettings) -> Policy:
    """The TCB policy the settings describe."""
    return Policy.tcb(
        allow_sw_hardening_needed=settings.tcb_policy_allow_sw_hardening_needed,
        allow_configuration_needed=settings.tcb_policy_allow_configuration_needed,
        out_of_date_grace=settings.tcb_policy_out_of_date_grace_seconds,
        denied_advisories=settings.tcb_policy_denied_advisories,
    )


def build_attestation(
    settings: AttestationSettings,
    *,
    simulated: SimulatedTdx | None = None,
    clock: Callable[[], float] = time.time,
    live: LiveCollateral | None = None,
) -> Attestation:
    """Everything a service attests and verifies with, from its settings.

    `simulated` is an already loaded simulated TDX (the in-process devnet); otherwise one is
    loaded from `settings.dangerous_simulated_tdx_dir` when set. `live` and `clock` are for
    tests (an injected collateral source and time).
    """
    if simulated is None and settings.dangerous_simulated_tdx_dir is not None:
        simulated = SimulatedTdx.load(settings.dangerous_simulated_tdx_dir)
    roots = [intel_sgx_root_ca()]
    if simulated is not None:
        roots.append(simulated.root_der)
    attestation: Attestation
    if settings.pccs_url is None and simulated is not None and live is None:
        sim = simulated

        def local(_quote: Quote, now: int) -> Collateral:
            return sim.collateral(now=now)

        attestation = Attestation(
            provider=sim, collateral_for=local, trusted_roots=tuple(roots),
            policy=policy_of(settings), simulated=sim, source="simulated-dev-pki",
        )  # fmt: skip
        return attestation
    hook: list[Attestation] = []

    def on_event(event: str, platform: PlatformId, detail: str) -> None:
        if hook:
            hook[0].on_collateral_event(event, platform, detail)

    source = live or LiveCollateral(
        settings.pccs_url or INTEL_PCS_URL,
        cache_dir=settings.collateral_cache_dir,
        clock=clock,
        refresh_margin=settings.collateral_refresh_margin_seconds,
        retry_interval=settings.collateral_retry_seconds,
        on_event=on_event,
    )
    attestation = Attestation(
        provider=simulated, collateral_for=source.for_quote, trusted_roots=tuple(roots),
        policy=policy_of(settings), live=source, simulated=simulated, source=source.base_url,
    )  # fmt: skip
    hook.append(attestation)
    return attestation


__all__ = [
    "Attestation",
    "AttestationSettings",
    "QuoteSource",
    "build_attestation",
    "collateral_expiry",
    "policy_of",
]
