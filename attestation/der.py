"""Just enough DER to read the raw signed parts of certificates and CRLs.

`cryptography` parses and checks the structures; this module only slices out bytes it does
not expose cheaply: the to-be-signed part exactly as signed (verifying over it avoids
re-encoding a large CRL on every check), the raw issuer and subject names (compared byte
for byte, as Intel's chains are), and the extensions by OID (basic constraints and the SGX
extension) without building Python objects for every extension. Every read is bounds-
checked and raises the caller's typed error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from attestation.exceptions import AttestationError, CertificateChainError

ECDSA_WITH_SHA256: Final = bytes.fromhex("06082a8648ce3d040302")
OID_BASIC_CONSTRAINTS: Final = "2.5.29.19"
OID_COMMON_NAME: Final = bytes.fromhex("550403")

Tlv = tuple[int, bytes, bytes]  # (tag, whole TLV, value)


def tlv_at(
    data: bytes,
    pos: int,
    limit: int,
    field: str,
    error: type[AttestationError] = CertificateChainError,
) -> tuple[int, int, int]:
    """(tag, value start, value end) of the TLV at `pos`, which must end by `limit`.

    Works on offsets into one buffer, so walking nested structures copies nothing.
    """
    if pos + 2 > limit:
        raise error(field, "truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    start = pos + 2
    if tag & 0x1F == 0x1F:
        raise error(field, "multi-byte DER tags are not expected here")
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or start + n > limit:
            raise error(field, "bad DER length")
        length = int.from_bytes(data[start : start + n], "big")
        start += n
    end = start + length
    if end > limit:
        raise error(field, "truncated DER value")
    return tag, start, end


def spans(
    data: bytes,
    start: int,
    end: int,
    field: str,
    error: type[AttestationError] = CertificateChainError,
) -> list[tuple[int, int, int, int]]:
    """Every TLV in data[start:end] as (tag, TLV start, value start, value end)."""
    out = []
    pos = start
    while pos < end:
        tag, vstart, vend = tlv_at(data, pos, end, field, error)
        out.append((tag, pos, vstart, vend))
        pos = vend
    return out


def read_tlv(
    data: bytes, pos: int, field: str, error: type[AttestationError] = CertificateChainError
) -> tuple[Tlv, int]:
    """One TLV at `pos`: ((tag, whole, value), next position)."""
    tag, vstart, end = tlv_at(data, pos, len(data), field, error)
    return (tag, data[pos:end], data[vstart:end]), end


def children(
    value: bytes, field: str, error: type[AttestationError] = CertificateChainError
) -> list[Tlv]:
    """Every TLV in `value` as (tag, whole, value)."""
    return [
        (tag, value[pos:vend], value[vstart:vend])
        for tag, pos, vstart, vend in spans(value, 0, len(value), field, error)
    ]


@lru_cache(maxsize=1024)
def oid_to_str(raw: bytes, field: str) -> str:
    if not raw:
        raise CertificateChainError(field, "empty OID")
    arcs = [raw[0] // 40, raw[0] % 40] if raw[0] < 80 else [2, raw[0] - 80]
    acc = 0
    for b in raw[1:]:
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
    return ".".join(map(str, arcs))


Span = tuple[int, int, int, int]  # (tag, TLV start, value start, value end) in one buffer


def signed_parts(
    der: bytes, field: str, error: type[AttestationError] = CertificateChainError
) -> tuple[bytes, list[Span]]:
    """(raw TBS, spans of the TBS children in `der`) of a structure signed with
    ecdsa-with-SHA256 (a certificate or CRL)."""
    n = len(der)
    tag, body, end = tlv_at(der, 0, n, field, error)
    if tag != 0x30 or end != n:
        raise error(field, "not a single DER SEQUENCE")
    kids = spans(der, body, end, field, error)
    if len(kids) != 3 or kids[0][0] != 0x30 or kids[1][0] != 0x30:
        raise error(field, "not a signed structure")
    _, _, alg_start, alg_end = kids[1]
    if der[alg_start:alg_end] != ECDSA_WITH_SHA256:
        raise error(f"{field}.signatureAlgorithm", "not ecdsa-with-SHA256")
    _, tbs_pos, tbs_start, tbs_end = kids[0]
    return der[tbs_pos:tbs_end], spans(der, tbs_start, tbs_end, field, error)


@dataclass(frozen=True, slots=True)
class RawCert:
    """The raw pieces of a certificate that chain checks compare."""

    tbs: bytes
    issuer: bytes
    subject: bytes
    extensions: dict[str, bytes]

    @property
    def is_ca(self) -> bool:
        value = self.extensions.get(OID_BASIC_CONSTRAINTS)
        if value is None:
            return False
        field = "basicConstraints"
        tag, body, end = tlv_at(value, 0, len(value), field)
        if tag != 0x30 or body == end:
            return False
        inner_tag, start, inner_end = tlv_at(value, body, end, field)
        spans(value, inner_end, end, field)  # the rest must still be well-formed DER
        return inner_tag == 0x01 and value[start:inner_end] not in (b"", b"\x00")

    def common_name(self) -> str:
        subject = self.subject
        _, start, end = tlv_at(subject, 0, len(subject), "subject")
        for _, _, rdn, rdn_end in spans(subject, start, end, "subject"):
            for _, _, attr, attr_end in spans(subject, rdn, rdn_end, "subject"):
                kids = spans(subject, attr, attr_end, "subject")
                if len(kids) == 2 and subject[kids[0][2] : kids[0][3]] == OID_COMMON_NAME:
                    return subject[kids[1][2] : kids[1][3]].decode("utf-8", "replace")
        return ""


def raw_cert(der: bytes, field: str) -> RawCert:
    tbs, kids = signed_parts(der, field)
    i = 1 if kids and kids[0][0] == 0xA0 else 0  # [0] EXPLICIT version
    if len(kids) < i + 6:
        raise CertificateChainError(field, "truncated TBSCertificate")
    extensions: dict[str, bytes] = {}
    for tag, _, value, value_end in kids[i + 6 :]:
        if tag != 0xA3:  # [3] EXPLICIT extensions
            continue
        _, seq, seq_end = tlv_at(der, value, value_end, field)
        for ext_tag, _, ext, ext_end in spans(der, seq, seq_end, field):
            # Extension ::= SEQUENCE { extnID OID, critical BOOLEAN OPTIONAL, extnValue
            # OCTET STRING }: walk its two or three TLVs inline (this loop is hot).
            parts: list[tuple[int, int, int]] = []
            pos = ext
            while pos < ext_end and len(parts) < 3:
                part = tlv_at(der, pos, ext_end, field)
                parts.append(part)
                pos = part[2]
            if pos < ext_end:  # more than three: finish the walk (it may raise) and reject
                spans(der, pos, ext_end, field)
                parts.append(part)
            if (
                ext_tag != 0x30
                or len(parts) not in (2, 3)
                or parts[0][0] != 0x06
                or parts[-1][0] != 0x04
            ):
                raise CertificateChainError(f"{field}.extensions", "malformed extension")
            oid = oid_to_str(der[parts[0][1] : parts[0][2]], field)
            if oid in extensions:
                raise CertificateChainError(f"{field}.extensions", f"duplicate extension {oid}")
            extensions[oid] = der[parts[-1][1] : parts[-1][2]]
    _, issuer_pos, _, issuer_end = kids[i + 2]
    _, subject_pos, _, subject_end = kids[i + 4]
    return RawCert(tbs, der[issuer_pos:issuer_end], der[subject_pos:subject_end], extensions)


def raw_crl_issuer(der: bytes, tbs_kids: list[Span], field: str) -> bytes:
    """The issuer name of a CRL, given the spans of its TBSCertList children in `der`."""
    i = 1 if tbs_kids and tbs_kids[0][0] == 0x02 else 0  # optional version INTEGER
    if len(tbs_kids) < i + 3:
        raise CertificateChainError(field, "truncated TBSCertList")
    _, pos, _, end = tbs_kids[i + 1]
    return der[pos:end]
