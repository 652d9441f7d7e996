"""Nox: a confidential-computation network for smart contracts (see README and DESIGN)."""

__version__ = "0.1.0"
