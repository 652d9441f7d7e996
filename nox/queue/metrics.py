"""Prometheus metrics of the queue layer, registered on a registry the service passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class QueueMetrics:
    """Counters of what the queue did: published, deduplicated, delivered, parked, buffered.

    The registry is injected (each service owns one); nothing is registered globally.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.published = Counter(
            "nox_queue_published",
            "Transaction messages published, by outcome (stored, or duplicate of a stored one).",
            ("outcome",),
            registry=registry,
        )
        self.deliveries = Counter(
            "nox_queue_deliveries",
            "Messages handed to this consumer, by whether it is a redelivery.",
            ("redelivered",),
            registry=registry,
        )
        self.parked = Counter(
            "nox_queue_parked",
            "Messages parked on the dead-letter subject (then terminated), by reason.",
            ("reason",),
            registry=registry,
        )
        self.squatted = Counter(
            "nox_queue_squatted",
            "Published messages JetStream called duplicates whose stored message was not ours"
            " (another publisher took the id): republished under the payload id.",
            registry=registry,
        )
        self.buffered = Gauge(
            "nox_queue_publish_buffered",
            "Messages waiting in the in-memory publish buffer while NATS is unreachable.",
            registry=registry,
        )

    def count_published(self, duplicate: bool) -> None:
        self.published.labels("duplicate" if duplicate else "stored").inc()
