"""The queue suite runs against a real nats-server per test (fixtures in tests/natsfix.py)."""

from __future__ import annotations

from natsfix import nats_server, queue_settings

__all__ = ["nats_server", "queue_settings"]
