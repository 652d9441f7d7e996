"""The one attestation bootstrap every service uses: `nox.attest.settings` (the shared
settings fields) and `nox.attest.bootstrap` (`build_attestation`). The settings import
nothing heavy; the bootstrap imports the chain stack, so services import it where needed."""

from __future__ import annotations

from nox.attest.settings import AttestationSettings

__all__ = ["AttestationSettings"]
