"""DCAP quote verification: a pure function of (quote, collateral, time, trusted roots).

Follows Intel's QVL algorithm (../shared/docs/tdx-dcap-notes.md §3, steps cited as "step N").
Every failed check raises a typed error naming the field; a quote that passes every check is
returned with its converged TCB status and advisory ids (accepting a non-terminal status is
the relying party's policy, see `attestation.policy`).

Time is strict like dcap-qvl (Intel's QvE reports expiry as non-terminal instead): every
certificate, CRL, TCB info and QE identity must be inside its validity window at `now`.

`Verifier` caches the collateral checks that do not depend on the quote or the time
(certificate chains, CRL and JSON signatures, revocation) keyed by content hash; windows are
re-checked against `now` on every call, so a cached verdict is the same verdict.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from attestation.collateral import Collateral, QeIdentity, TcbInfo, pem_certificates
from attestation.der import RawCert, raw_cert, raw_crl_issuer, signed_parts
from attestation.exceptions import (
    CertificateChainError,
    CertificateRevoked,
    CollateralExpired,
    CollateralMismatch,
    CrlError,
    QeIdentityMismatch,
    QeReportDataMismatch,
    SignatureInvalid,
    TcbRevoked,
    UntrustedRoot,
)
from attestation.pck import SGX_EXTENSION_OID, PckExtension, parse_sgx_extension
from attestation.quote import Quote, TdReport, parse_quote
from attestation.tcb import TcbVerdict, evaluate, module_identity

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
#: What cryptography raises on malformed DER, found by fuzzing (KeyError: unknown string tags
#: in names; the x509 ones: duplicate or undecodable extensions).
_DECODE_ERRORS: Final = (
    ValueError,
    KeyError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
    x509.ExtensionNotFound,
)
#: The same, for the other modules that decode certificates from a quote.
DECODE_ERRORS: Final = _DECODE_ERRORS


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote that verified, with its TCB verdict and what it was verified against."""

    quote: Quote
    status: str
    advisory_ids: tuple[str, ...]
    tcb: TcbVerdict
    pck: PckExtension
    pck_ca: str
    tcb_info_issue_date: int
    qe_identity_issue_date: int
    collateral_expires_at: int
    root_sha256: bytes

    @property
    def fmspc(self) -> bytes:
        return self.pck.fmspc

    @property
    def collateral_issued_at(self) -> int:
        """Issue date of the older of TCB info and QE identity (for freshness policy)."""
        return min(self.tcb_info_issue_date, self.qe_identity_issue_date)


# --- small helpers -----------------------------------------------------------------------------

Window = tuple[str, int, int]  # (field, not before, not after)


def _ecdsa_verify(key: ec.EllipticCurvePublicKey, sig64: bytes, data: bytes, field: str) -> None:
    if len(sig64) != 64:
        raise SignatureInvalid(field, "signature must be 64 bytes (r||s)")
    der = encode_dss_signature(int.from_bytes(sig64[:32], "big"), int.from_bytes(sig64[32:], "big"))
    try:
        key.verify(der, data, _ECDSA_SHA256)
    except InvalidSignature:
        raise SignatureInvalid(field, "ECDSA-P256-SHA256 signature does not verify") from None


def _p256_key(cert: x509.Certificate, field: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateChainError(field, "public key is not ECDSA P-256")
    return key


def _cert_window(cert: x509.Certificate, field: str) -> Window:
    return (
        field,
        int(cert.not_valid_before_utc.timestamp()),
        int(cert.not_valid_after_utc.timestamp()),
    )


def _check_windows(windows: Sequence[Window], now: int) -> None:
    for field, start, end in windows:
        if now < start:
            raise CollateralExpired(field, f"not valid before {start} (now {now})")
        if now > end:
            raise CollateralExpired(field, f"expired at {end} (now {now})")


@lru_cache(maxsize=16)
def trusted_root(der: bytes) -> tuple[x509.Certificate, RawCert]:
    """A configured root, decoded once per process (roots are configuration, not input)."""
    try:
        return x509.load_der_x509_certificate(der), raw_cert(der, "trusted_root")
    except _DECODE_ERRORS as exc:
        raise CertificateChainError("trusted_root", f"not a certificate: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class _Chain:
    certs: tuple[x509.Certificate, ...]
    raws: tuple[RawCert, ...]
    root_sha256: bytes


def _verify_chain(
    ders: Sequence[bytes], roots: dict[bytes, bytes], field: str, leaf_cn: Sequence[str]
) -> _Chain:
    """Signatures, CA flags and names of a chain leaf -> ... -> a trusted root (notes step 2, 4).

    The root must be byte-identical to a trusted root; its self-signature is not what makes
    it trusted, so it is not checked. Names are compared as raw DER and signatures verified
    over the TBS bytes exactly as signed (see `attestation.der`).
    """
    if len(ders) < 2:
        raise CertificateChainError(field, "chain needs a leaf and a root")
    root_hash = hashlib.sha256(ders[-1]).digest()
    if root_hash not in roots:
        raise UntrustedRoot(f"{field}[{len(ders) - 1}]", "chain does not end in a trusted root")
    certs, raws = [], []
    for i, der in enumerate(ders[:-1]):
        try:
            cert = x509.load_der_x509_certificate(der)
            # cryptography decodes these lazily; touch them here so a malformed certificate
            # fails as a chain error rather than deep inside a later check.
            _ = (
                cert.public_key(),
                cert.not_valid_before_utc,
                cert.not_valid_after_utc,
                cert.serial_number,
                cert.signature,
            )
        except _DECODE_ERRORS as exc:
            raise CertificateChainError(f"{field}[{i}]", f"not a certificate: {exc!r}") from None
        certs.append(cert)
        raws.append(raw_cert(der, f"{field}[{i}]"))
    root_cert, root_raw = trusted_root(ders[-1])
    certs.append(root_cert)
    raws.append(root_raw)
    for i in range(len(certs) - 1):
        issuer_key = _p256_key(certs[i + 1], f"{field}[{i + 1}]")
        if raws[i].issuer != raws[i + 1].subject:
            raise CertificateChainError(f"{field}[{i}]", "issuer name is not the next subject")
        try:
            issuer_key.verify(certs[i].signature, raws[i].tbs, _ECDSA_SHA256)
        except InvalidSignature:
            raise CertificateChainError(
                f"{field}[{i}]", f"signature by {raws[i + 1].common_name()!r} does not verify"
            ) from None
        if not raws[i + 1].is_ca:
            raise CertificateChainError(f"{field}[{i + 1}]", "issuer is not a CA")
        _p256_key(certs[i], f"{field}[{i}]")
    if raws[0].is_ca:
        raise CertificateChainError(f"{field}[0]", "CA certificate used as end entity")
    cn = raws[0].common_name()
    if not any(cn.endswith(name) for name in leaf_cn):
        raise CertificateChainError(f"{field}[0]", f"unexpected subject CN {cn!r}")
    return _Chain(tuple(certs), tuple(raws), root_hash)


@dataclass(frozen=True, slots=True)
class _Crl:
    crl: x509.CertificateRevocationList
    tbs: bytes
    issuer: bytes
    field: str


def _load_crl(der: bytes, field: str) -> _Crl:
    try:
        crl = x509.load_der_x509_crl(der)
        _ = (crl.last_update_utc, crl.next_update_utc, crl.signature)
    except _DECODE_ERRORS as exc:
        raise CrlError(field, f"not a DER CRL: {exc!r}") from None
    if crl.next_update_utc is None:
        raise CrlError(field, "CRL has no nextUpdate")
    tbs, kids = signed_parts(der, field, CrlError)
    return _Crl(crl, tbs, raw_crl_issuer(der, kids, field), field)


def _check_crl(crl: _Crl, issuer: x509.Certificate, issuer_raw: RawCert) -> Window:
    """The CRL is the issuer's (name and signature); return its validity window."""
    field = crl.field
    if crl.issuer != issuer_raw.subject:
        raise CrlError(f"{field}.issuer", f"not issued by {issuer_raw.common_name()!r}")
    try:
        _p256_key(issuer, f"{field}.issuer").verify(crl.crl.signature, crl.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        raise CrlError(f"{field}.signature", "CRL signature does not verify") from None
    nxt = crl.crl.next_update_utc
    assert nxt is not None  # checked by _load_crl
    return (field, int(crl.crl.last_update_utc.timestamp()), int(nxt.timestamp()))


def _not_revoked(crl: _Crl, cert: x509.Certificate, field: str) -> None:
    try:
        entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    except _DECODE_ERRORS as exc:
        raise CrlError(crl.field, f"undecodable revocation entry: {exc!r}") from None
    if entry is not None:
        raise CertificateRevoked(field, f"serial {cert.serial_number:x} is revoked")


# --- checked collateral (cacheable) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CheckedCollateral:
    root_crl: _Crl
    pck_crl: _Crl
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    windows: tuple[Window, ...]


def _signing_chain(
    chain_pem: str,
    name: str,
    roots: dict[bytes, bytes],
    root_crl: _Crl,
    seen: dict[str, _Chain],
    ders: list[bytes] | None = None,
) -> _Chain:
    """The TCB signing chain (usually the same PEM for TCB info and QE identity: check once).

    `ders` is the chain already split from `chain_pem`, if the caller has it.
    """
    if chain_pem in seen:
        return seen[chain_pem]
    field = f"{name}_issuer_chain"
    if ders is None:
        ders = pem_certificates(chain_pem, field)
    chain = _verify_chain(ders, roots, field, ("SGX TCB Signing",))
    for i, cert in enumerate(chain.certs[:-1]):
        _not_revoked(root_crl, cert, f"{field}[{i}]")
    seen[chain_pem] = chain
    return chain


def check_collateral(collateral: Collateral, roots: dict[bytes, bytes]) -> _CheckedCollateral:
    """Every time-independent check of the collateral alone (notes steps 3, 5, 6)."""
    root_crl = _load_crl(collateral.root_ca_crl, "root_ca_crl")
    pck_crl = _load_crl(collateral.pck_crl, "pck_crl")
    # The root CRL is checked against the root the TCB signing chain ends in.
    tcb_ders = pem_certificates(collateral.tcb_info_issuer_chain, "tcb_info_issuer_chain")
    root_der = roots.get(hashlib.sha256(tcb_ders[-1]).digest())
    if root_der is None:
        raise UntrustedRoot("tcb_info_issuer_chain", "chain does not end in a trusted root")
    windows = [_check_crl(root_crl, *trusted_root(root_der))]
    seen: dict[str, _Chain] = {}
    for name, chain_pem, ders, text, sig in (
        (
            "tcb_info",
            collateral.tcb_info_issuer_chain,
            tcb_ders,
            collateral.tcb_info,
            collateral.tcb_info_signature,
        ),
        (
            "qe_identity",
            collateral.qe_identity_issuer_chain,
            None,
            collateral.qe_identity,
            collateral.qe_identity_signature,
        ),
    ):
        chain = _signing_chain(chain_pem, name, roots, root_crl, seen, ders)
        _ecdsa_verify(_p256_key(chain.certs[0], name), sig, text.encode(), f"{name}_signature")
        windows += [_cert_window(c, f"{name}_issuer_chain[{i}]") for i, c in enumerate(chain.certs)]
    tcb_info = TcbInfo.parse(collateral.tcb_info)
    qe_identity = QeIdentity.parse(collateral.qe_identity)
    windows.append(("tcb_info.issueDate", tcb_info.issue_date, 2**63))
    windows.append(("tcb_info.nextUpdate", 0, tcb_info.next_update))
    windows.append(("qe_identity.issueDate", qe_identity.issue_date, 2**63))
    windows.append(("qe_identity.nextUpdate", 0, qe_identity.next_update))
    return _CheckedCollateral(root_crl, pck_crl, tcb_info, qe_identity, tuple(windows))


@dataclass(frozen=True, slots=True)
class _CheckedPck:
    leaf_key: ec.EllipticCurvePublicKey
    extension: PckExtension
    ca: str
    root_sha256: bytes
    windows: tuple[Window, ...]


def check_pck_chain(
    pem: bytes, checked: _CheckedCollateral, roots: dict[bytes, bytes]
) -> _CheckedPck:
    """PCK chain to a trusted root, revocation by both CRLs, SGX extension (notes step 4)."""
    chain = _verify_chain(
        pem_certificates(pem, "pck_certificate_chain"),
        roots,
        "pck_certificate_chain",
        ("SGX PCK Certificate",),
    )
    if len(chain.certs) != 3:
        raise CertificateChainError("pck_certificate_chain", "expected leaf, PCK CA and root")
    leaf, inter = chain.certs[0], chain.certs[1]
    inter_cn = chain.raws[1].common_name()
    if not inter_cn.endswith(("SGX PCK Platform CA", "SGX PCK Processor CA")):
        raise CertificateChainError("pck_certificate_chain[1]", f"unexpected CN {inter_cn!r}")
    ca = "platform" if inter_cn.endswith("Platform CA") else "processor"
    _not_revoked(checked.root_crl, inter, "pck_certificate_chain[1]")
    windows = [_check_crl(checked.pck_crl, inter, chain.raws[1])]
    _not_revoked(checked.pck_crl, leaf, "pck_certificate_chain[0]")
    windows += [_cert_window(c, f"pck_certificate_chain[{i}]") for i, c in enumerate(chain.certs)]
    sgx = chain.raws[0].extensions.get(SGX_EXTENSION_OID)
    if sgx is None:
        raise CertificateChainError("pck_certificate.sgx_extension", "missing")
    return _CheckedPck(
        leaf_key=_p256_key(leaf, "pck_certificate_chain[0]"),
        extension=parse_sgx_extension(sgx),
        ca=ca,
        root_sha256=chain.root_sha256,
        windows=tuple(windows),
    )


# --- per-quote checks --------------------------------------------------------------------------


def _check_qe_report_data(quote: Quote) -> None:
    """Step 10: QE REPORTDATA[0:32] == SHA-256(attestation key || QE auth data)."""
    expected = hashlib.sha256(quote.attestation_key + quote.qe.qe_auth_data).digest()
    if quote.qe.qe_report.report_data[:32] != expected:
        raise QeReportDataMismatch(
            "qe_report.report_data", "does not bind the attestation key and QE auth data"
        )


def _check_qe_identity(quote: Quote, identity: QeIdentity) -> None:
    """Step 11: the QE report against the QE identity (its TCB level comes later)."""
    rep = quote.qe.qe_report
    if rep.misc_select & identity.miscselect_mask != identity.miscselect:
        raise QeIdentityMismatch("qe_report.misc_select", "does not match QE identity")
    masked = bytes(a & m for a, m in zip(rep.attributes, identity.attributes_mask, strict=True))
    if masked != identity.attributes:
        raise QeIdentityMismatch("qe_report.attributes", "does not match QE identity")
    if rep.debug:
        raise QeIdentityMismatch("qe_report.attributes", "quoting enclave runs in debug mode")
    if rep.mr_signer != identity.mrsigner:
        raise QeIdentityMismatch("qe_report.mr_signer", "not the QE identity's signer")
    if rep.isv_prod_id != identity.isvprodid:
        raise QeIdentityMismatch("qe_report.isv_prod_id", "not the QE identity's product id")


def _check_collateral_matches(quote: Quote, tcb_info: TcbInfo, identity: QeIdentity) -> None:
    """Steps 5 and 6: TCB info and QE identity are for this TEE type."""
    if quote.is_tdx:
        if tcb_info.id != "TDX" or tcb_info.version < 3:
            raise CollateralMismatch("tcb_info.id", f"{tcb_info.id} v{tcb_info.version} for TDX")
        if identity.id != "TD_QE" or identity.version != 2:
            raise CollateralMismatch(
                "qe_identity.id", f"{identity.id} v{identity.version}; TDX needs TD_QE v2"
            )
    else:
        if tcb_info.id != "SGX" or tcb_info.version not in (2, 3):
            raise CollateralMismatch("tcb_info.id", f"{tcb_info.id} v{tcb_info.version} for SGX")
        if identity.id != "QE" or identity.version != 2:
            raise CollateralMismatch(
                "qe_identity.id", f"{identity.id} v{identity.version}; SGX needs QE v2"
            )


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Lru(Generic[_K, _V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        if self.size <= 0:
            return
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class Verifier:
    """Quote verifier with fixed trusted roots and a cache of time-independent checks.

    `cache_size=0` disables caching (what `verify_quote` uses).
    """

    def __init__(self, trusted_roots: Sequence[bytes], *, cache_size: int = 128) -> None:
        if not trusted_roots:
            raise ValueError("at least one trusted root is required")
        self._roots = {hashlib.sha256(r).digest(): bytes(r) for r in trusted_roots}
        self._collateral: _Lru[bytes, _CheckedCollateral] = _Lru(cache_size)
        self._pck: _Lru[tuple[bytes, bytes], _CheckedPck] = _Lru(cache_size)
        self._qe_sig: _Lru[tuple[bytes, bytes], bool] = _Lru(cache_size * 4)

    def verify(self, quote: bytes | Quote, collateral: Collateral, *, now: int) -> VerifiedQuote:
        """Verify `quote` against `collateral` at Unix time `now`; raise on any failure."""
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        caching = self._collateral.size > 0
        cdigest = collateral.digest if caching else b""
        checked = self._collateral.get(cdigest) if caching else None
        if checked is None:
            checked = check_collateral(collateral, self._roots)
            self._collateral.put(cdigest, checked)
        _check_windows(checked.windows, now)
        tcb_info, identity = checked.tcb_info, checked.qe_identity
        _check_collateral_matches(q, tcb_info, identity)

        pem = q.pck_chain_pem
        pck_key = (hashlib.sha256(pem).digest() if caching else b"", cdigest)
        pck = self._pck.get(pck_key) if caching else None
        if pck is None:
            pck = check_pck_chain(pem, checked, self._roots)
            self._pck.put(pck_key, pck)
        _check_windows(pck.windows, now)

        # Step 7: collateral for this platform.
        if pck.extension.fmspc != tcb_info.fmspc:
            raise CollateralMismatch("tcb_info.fmspc", "FMSPC differs from the PCK certificate's")
        if pck.extension.pceid != tcb_info.pce_id:
            raise CollateralMismatch("tcb_info.pceId", "PCEID differs from the PCK certificate's")
        # Step 8: TDX module identity.
        td = q.body if isinstance(q.body, TdReport) else None
        module = module_identity(tcb_info, td) if td is not None else None
        # Step 9: QE report signed by the PCK key.
        qe_key = (pck_key[0], q.qe.qe_report.raw + q.qe.qe_report_signature)
        if not caching or self._qe_sig.get(qe_key) is None:
            _ecdsa_verify(
                pck.leaf_key, q.qe.qe_report_signature, q.qe.qe_report.raw, "qe_report_signature"
            )
            self._qe_sig.put(qe_key, True)
        _check_qe_report_data(q)  # step 10
        _check_qe_identity(q, identity)  # step 11
        # Step 12: the quote signed by the attestation key.
        try:
            ak = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b"\x04" + q.attestation_key
            )
        except ValueError:
            raise SignatureInvalid("attestation_key", "not a P-256 point") from None
        _ecdsa_verify(ak, q.signature, q.signed_data, "quote_signature")
        # Steps 13-17.
        verdict = evaluate(
            tcb_info=tcb_info,
            qe_identity=identity,
            qe_isvsvn=q.qe.qe_report.isv_svn,
            cpusvn=pck.extension.cpusvn_components,
            pcesvn=pck.extension.pcesvn,
            td=td,
            module=module,
        )
        if verdict.status == "Revoked":
            raise TcbRevoked("tcb_status", "the platform, module or QE TCB is revoked")
        expires = min(end for _, _, end in checked.windows + pck.windows)
        return VerifiedQuote(
            quote=q,
            status=verdict.status,
            advisory_ids=verdict.advisory_ids,
            tcb=verdict,
            pck=pck.extension,
            pck_ca=pck.ca,
            tcb_info_issue_date=tcb_info.issue_date,
            qe_identity_issue_date=identity.issue_date,
            collateral_expires_at=expires,
            root_sha256=pck.root_sha256,
        )


def verify_quote(
    quote: bytes | Quote, collateral: Collateral, *, now: int, trusted_roots: Sequence[bytes]
) -> VerifiedQuote:
    """Verify a quote with no cache: the pure function of (quote, collateral, now, roots)."""
    return Verifier(trusted_roots, cache_size=0).verify(quote, collateral, now=now)


__all__ = ["VerifiedQuote", "Verifier", "check_collateral", "check_pck_chain", "verify_quote"]
