"""Dual verification: the project's verifier and Phala's dcap-qvl (Rust) must agree.

A quote is accepted only when both accept it with the same TCB status and advisory ids;
any disagreement is reported through the injected `on_disagreement` callback and rejected.
When both reject, the project's (more specific) error is raised. dcap-qvl builds some
appraisal policy into `verify` (debug, MRSERVICETD, TD attributes), so the project's side
runs the same attribute checks of `attestation.policy` before comparing; a policy that uses a
`dangerous_*` switch therefore disagrees with dcap-qvl by design.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from attestation.collateral import Collateral, pem_certificates
from attestation.exceptions import AttestationError, VerifierDisagreement
from attestation.policy import Policy, check_attributes
from attestation.quote import parse_quote
from attestation.verify import VerifiedQuote, Verifier


def load_dcap_qvl() -> ModuleType | None:
    """The `dcap_qvl` module, or None where it is not installed."""
    try:
        return importlib.import_module("dcap_qvl")
    except ImportError:
        return None


@dataclass(frozen=True, slots=True)
class Disagreement:
    """What each verifier said about one quote."""

    ours: str
    dcap_qvl: str


@dataclass(frozen=True, slots=True)
class DualVerdict:
    """A quote both verifiers accepted, with the same status and advisories."""

    verified: VerifiedQuote
    verifiers: tuple[str, ...]

    @property
    def status(self) -> str:
        return self.verified.status

    @property
    def advisory_ids(self) -> tuple[str, ...]:
        return self.verified.advisory_ids


def dcap_qvl_verdict(
    dq: ModuleType, raw: bytes, collateral: Collateral, roots: Sequence[bytes], now: int
) -> tuple[str, tuple[str, ...]]:
    """dcap-qvl's (status, sorted advisories); raises ValueError with its message on reject."""
    coll: Any = dq.QuoteCollateralV3.from_json(collateral.to_json())
    root = _root_for(raw, roots)
    report: Any = dq.verify_with_root_ca(raw, coll, root, now)
    return str(report.status), tuple(sorted(report.advisory_ids))


def _root_for(raw: bytes, roots: Sequence[bytes]) -> bytes:
    """The trusted root the quote's PCK chain ends in (the first root if none matches)."""
    try:
        last = pem_certificates(parse_quote(raw).pck_chain_pem, "pck")[-1]
    except AttestationError:
        return roots[0]
    digest = hashlib.sha256(last).digest()
    return next((r for r in roots if hashlib.sha256(r).digest() == digest), roots[0])


class DualVerifier:
    """Verify with both verifiers; `dcap_qvl=None` disables the second one explicitly."""

    def __init__(
        self,
        trusted_roots: Sequence[bytes],
        *,
        policy: Policy | None = None,
        dcap_qvl: ModuleType | None = None,
        on_disagreement: Callable[[Disagreement], None] | None = None,
        cache_size: int = 128,
    ) -> None:
        self._roots = list(trusted_roots)
        self._ours = Verifier(trusted_roots, cache_size=cache_size)
        self._policy = policy or Policy.any_tcb_status()
        self._dq = dcap_qvl
        self._report = on_disagreement or (lambda _d: None)

    @classmethod
    def default(cls, trusted_roots: Sequence[bytes], **kwargs: Any) -> DualVerifier:
        """Dual where dcap-qvl is importable, the project's verifier alone otherwise."""
        return cls(trusted_roots, dcap_qvl=load_dcap_qvl(), **kwargs)

    @property
    def dual(self) -> bool:
        return self._dq is not None

    def verify(self, quote: bytes, collateral: Collateral, *, now: int) -> DualVerdict:
        ours: VerifiedQuote | None = None
        error: AttestationError | None = None
        try:
            ours = self._ours.verify(quote, collateral, now=now)
            check_attributes(ours.quote, self._policy)
        except AttestationError as exc:
            ours, error = None, exc
        if self._dq is None:
            if error is not None:
                raise error
            assert ours is not None
            return DualVerdict(ours, ("attestation",))
        raw = bytes(quote)
        try:
            theirs: tuple[str, tuple[str, ...]] | str = dcap_qvl_verdict(
                self._dq, raw, collateral, self._roots, now
            )
        except ValueError as exc:
            theirs = f"rejected: {exc}".replace("\n", " ")
        if error is not None:
            if not isinstance(theirs, str):
                self._report(Disagreement(f"rejected: {error}", f"accepted: {theirs}"))
            raise error
        assert ours is not None
        mine = (ours.status, tuple(sorted(ours.advisory_ids)))
        if theirs != mine:
            self._report(Disagreement(f"accepted: {mine}", str(theirs)))
            raise VerifierDisagreement(
                "dcap_qvl", f"project verifier says {mine}, dcap-qvl says {theirs}"
            )
        return DualVerdict(ours, ("attestation", "dcap-qvl"))
