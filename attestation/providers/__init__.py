"""Quote providers: configfs-tsm on a real TDX guest, and simulated TDX for development."""

from __future__ import annotations

from attestation.providers.configfs import ConfigfsTsm
from attestation.providers.simulated import SimulatedTdx

__all__ = ["ConfigfsTsm", "SimulatedTdx"]
