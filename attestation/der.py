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


def read_tlv(
    data: bytes, pos: int, field: str, error: type[AttestationError] = CertificateChainError
) -> tuple[Tlv, int]:
    """One TLV at `pos`: ((tag, whole, value), next position)."""
    if pos + 2 > len(data):
        raise error(field, "truncated DER")
    tag, length = data[pos], data[pos + 1]
    head = 2
    if tag & 0x1F == 0x1F:
        raise error(field, "multi-byte DER tags are not expected here")
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + 2 + n > len(data):
            raise error(field, "bad DER length")
        length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
        head += n
    end = pos + head + length
    if end > len(data):
        raise error(field, "truncated DER value")
    return (tag, data[pos:end], data[pos + head : end]), end


def children(
    value: bytes, field: str, error: type[AttestationError] = CertificateChainError
) -> list[Tlv]:
    out = []
    pos = 0
    while pos < len(value):
        tlv, pos = read_tlv(value, pos, field, error)
        out.append(tlv)
    return out


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


def signed_parts(
    der: bytes, field: str, error: type[AttestationError] = CertificateChainError
) -> tuple[bytes, list[Tlv]]:
    """(raw TBS, TBS children) of a certificate or CRL signed with ecdsa-with-SHA256."""
    (tag, _, body), end = read_tlv(der, 0, field, error)
    if tag != 0x30 or end != len(der):
        raise error(field, "not a single DER SEQUENCE")
    kids = children(body, field, error)
    if len(kids) != 3 or kids[0][0] != 0x30 or kids[1][0] != 0x30:
        raise error(field, "not a signed structure")
    alg = kids[1][2]
    if alg != ECDSA_WITH_SHA256:
        raise error(f"{field}.signatureAlgorithm", "not ecdsa-with-SHA256")
    return kids[0][1], children(kids[0][2], field, error)


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
        (tag, _, body), _ = read_tlv(value, 0, "basicConstraints")
        inner = children(body, "basicConstraints") if tag == 0x30 else []
        return bool(inner and inner[0][0] == 0x01 and inner[0][2] not in (b"", b"\x00"))

    def common_name(self) -> str:
        for rdn in children(read_tlv(self.subject, 0, "subject")[0][2], "subject"):
            for attr in children(rdn[2], "subject"):
                kids = children(attr[2], "subject")
                if len(kids) == 2 and kids[0][2] == OID_COMMON_NAME:
                    return kids[1][2].decode("utf-8", "replace")
        return ""


def raw_cert(der: bytes, field: str) -> RawCert:
    tbs, kids = signed_parts(der, field)
    i = 1 if kids and kids[0][0] == 0xA0 else 0  # [0] EXPLICIT version
    if len(kids) < i + 6:
        raise CertificateChainError(field, "truncated TBSCertificate")
    extensions: dict[str, bytes] = {}
    for tag, _, value in kids[i + 6 :]:
        if tag != 0xA3:  # [3] EXPLICIT extensions
            continue
        (_, _, seq), _ = read_tlv(value, 0, field)
        for ext_tag, _, ext in children(seq, field):
            parts = children(ext, field)
            if (
                ext_tag != 0x30
                or len(parts) not in (2, 3)
                or parts[0][0] != 0x06
                or parts[-1][0] != 0x04
            ):
                raise CertificateChainError(f"{field}.extensions", "malformed extension")
            oid = oid_to_str(parts[0][2], field)
            if oid in extensions:
                raise CertificateChainError(f"{field}.extensions", f"duplicate extension {oid}")
            extensions[oid] = parts[-1][2]
    return RawCert(tbs, kids[i + 2][1], kids[i + 4][1], extensions)


def raw_crl_issuer(tbs_kids: list[Tlv], field: str) -> bytes:
    """The issuer name of a CRL's TBSCertList children."""
    i = 1 if tbs_kids and tbs_kids[0][0] == 0x02 else 0  # optional version INTEGER
    if len(tbs_kids) < i + 3:
        raise CertificateChainError(field, "truncated TBSCertList")
    return tbs_kids[i + 1][1]
