"""Differential test against dcap-qvl 0.7.0: random single-byte mutations of the real quotes
are accepted or rejected identically, and accepted ones get the same status and advisories,
apart from the differences documented in docs/attestation.md:

1. the outer certification data type of a v4/v5 quote must be 6 (Intel QVL); dcap-qvl does
   not check it (fixture N20);
2. the root certificate embedded at the end of the quote's PCK chain must be a trusted root
   byte for byte (Intel QVL); dcap-qvl ignores the embedded root and anchors at its own;
3. when the collateral carries `pck_certificate_chain`, dcap-qvl verifies that chain instead
   of the quote's; we always verify the chain the quote carries (the QE signed with its key).

In all three our verifier is the stricter one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import dcap_qvl
import pytest
from conftest import Fixtures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation.exceptions import AttestationError
from attestation.policy import Policy, check_attributes
from attestation.quote import parse_quote
from attestation.verify import Verifier

BEGIN = b"-----BEGIN CERTIFICATE-----"


@dataclass
class Case:
    id: str
    quote: bytes
    collateral: Any
    dq_collateral: Any
    now: int
    outer_type: tuple[int, int] | None  # offsets of the outer certification data type
    pem: tuple[int, int]  # offsets of the PCK chain PEM
    root_pem_start: int  # where the embedded root certificate's PEM block starts
    collateral_has_pck_chain: bool

    def documented(self, pos: int) -> str | None:
        """Which documented difference a mutation at `pos` falls under, if any."""
        if self.outer_type and self.outer_type[0] <= pos < self.outer_type[1]:
            return "outer certification data type"
        if self.root_pem_start <= pos < self.pem[1]:
            return "embedded root certificate"
        if self.collateral_has_pck_chain and self.pem[0] <= pos < self.pem[1]:
            return "collateral PCK chain preferred by dcap-qvl"
        return None


@pytest.fixture(scope="module")
def cases(fx: Fixtures) -> list[Case]:
    out = []
    for c in fx.index:
        raw = fx.quote(c["quote"])
        q = parse_quote(raw)
        pem_start = len(q.raw) - len(q.qe.cert_data)
        outer = None
        if q.header.version >= 4:
            at = q.signed_length + 4 + 128
            outer = (at, at + 2)
        third = q.qe.cert_data.find(
            BEGIN, q.qe.cert_data.find(BEGIN, q.qe.cert_data.find(BEGIN) + 1) + 1
        )
        coll_text = (fx.root / c["collateral"]).read_text()
        out.append(
            Case(
                id=c["id"],
                quote=raw,
                collateral=fx.collateral(c["collateral"]),
                dq_collateral=dcap_qvl.QuoteCollateralV3.from_json(coll_text),
                now=c["now"],
                outer_type=outer,
                pem=(pem_start, len(q.raw)),
                root_pem_start=pem_start + third,
                collateral_has_pck_chain="pck_certificate_chain" in coll_text,
            )
        )
    return out


@pytest.fixture(scope="module")
def verifier(intel_root: bytes) -> Verifier:
    return Verifier([intel_root])


def _ours(v: Verifier, case: Case, quote: bytes) -> tuple[str, ...]:
    try:
        r = v.verify(quote, case.collateral, now=case.now)
        check_attributes(r.quote, Policy.any_tcb_status())
    except AttestationError as exc:
        return ("reject", exc.reason)
    return ("accept", r.status, *sorted(r.advisory_ids))


def _theirs(case: Case, quote: bytes) -> tuple[str, ...]:
    try:
        r = dcap_qvl.verify(quote, case.dq_collateral, case.now)
    except ValueError as exc:
        return ("reject", str(exc).splitlines()[0])
    return ("accept", r.status, *sorted(r.advisory_ids))


def test_unmutated_quotes_agree(cases: list[Case], verifier: Verifier) -> None:
    for case in cases:
        assert _ours(verifier, case, case.quote)[0] == _theirs(case, case.quote)[0], case.id


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(0, 100),
    where=st.integers(0, 10**6),
    flip=st.integers(1, 255),
    bias=st.booleans(),
)
def test_single_byte_mutations_get_the_same_verdict(
    cases: list[Case], verifier: Verifier, which: int, where: int, flip: int, bias: bool
) -> None:
    case = cases[which % len(cases)]
    # Half the examples aim at the signed part and signature data (before the PEM chain),
    # where every field is; the rest anywhere in the file, padding included.
    limit = case.pem[0] if bias else len(case.quote)
    pos = where % limit
    mutated = bytearray(case.quote)
    mutated[pos] ^= flip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns on mutated (negative) serials
        ours = _ours(verifier, case, bytes(mutated))
    theirs = _theirs(case, bytes(mutated))
    if ours == theirs or (ours[0] == theirs[0] == "reject"):
        return
    note = case.documented(pos)
    context = (case.id, pos, ours, theirs)
    assert note is not None, context
    assert ours[0] == "reject", context
    assert theirs[0] == "accept", context


def test_documented_differences_exist(cases: list[Case], verifier: Verifier) -> None:
    """Each documented difference is real (so the exemptions above are not too broad)."""
    case = next(c for c in cases if c.id == "dcapqvl-tdx-v4")
    assert case.outer_type is not None
    for pos in (case.outer_type[0], case.root_pem_start + len(BEGIN) + 40):
        mutated = bytearray(case.quote)
        mutated[pos] ^= 0x03 if pos == case.outer_type[0] else 0x01
        assert _ours(verifier, case, bytes(mutated))[0] == "reject"
        assert _theirs(case, bytes(mutated))[0] == "accept"
