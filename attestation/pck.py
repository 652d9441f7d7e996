"""The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1).

`cryptography` exposes an unknown extension only as its raw DER value, and the structure
(nested SEQUENCEs of {OID, value}) needs just a handful of DER types, so a minimal DER
reader/writer lives here rather than pulling in a full ASN.1 library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from attestation.der import children, oid_to_str, read_tlv
from attestation.exceptions import CertificateChainError

SGX_EXTENSION_OID: Final = "1.2.840.113741.1.13.1"

_SEQUENCE: Final = 0x30
_OID: Final = 0x06
_INTEGER: Final = 0x02
_OCTET_STRING: Final = 0x04
_ENUMERATED: Final = 0x0A
_BOOLEAN: Final = 0x01


@dataclass(frozen=True, slots=True)
class PckExtension:
    """Values of the SGX extension that verification uses."""

    ppid: bytes
    cpusvn_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pceid: bytes
    fmspc: bytes
    sgx_type: int


_FIELD: Final = "pck_certificate.sgx_extension"


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Return (tag, value, next position); raise on anything malformed."""
    (tag, _, value), end = read_tlv(data, pos, _FIELD)
    return tag, value, end


def _children(value: bytes) -> list[tuple[int, bytes]]:
    return [(tag, inner) for tag, _, inner in children(value, _FIELD)]


def _oid_to_str(raw: bytes) -> str:
    return oid_to_str(raw, _FIELD)


def _pairs(value: bytes, field: str) -> dict[str, tuple[int, bytes]]:
    """A SEQUENCE OF SEQUENCE {OID, value} as {dotted oid: (tag, value)}."""
    out: dict[str, tuple[int, bytes]] = {}
    for tag, inner in _children(value):
        kids = _children(inner) if tag == _SEQUENCE else []
        if len(kids) != 2 or kids[0][0] != _OID:
            raise CertificateChainError(field, "expected SEQUENCE {OID, value}")
        out[_oid_to_str(kids[0][1])] = kids[1]
    return out


def parse_sgx_extension(der_value: bytes) -> PckExtension:
    """Decode the extension's DER value (the OCTET STRING contents)."""
    field = "pck_certificate.sgx_extension"
    tag, body, end = _read_tlv(der_value, 0)
    if tag != _SEQUENCE or end != len(der_value):
        raise CertificateChainError(field, "not a single SEQUENCE")
    top = _pairs(body, field)
    base = SGX_EXTENSION_OID

    def need(oid: str, tag: int, size: int | None = None) -> bytes:
        item = top.get(oid)
        if item is None or item[0] != tag or (size is not None and len(item[1]) != size):
            raise CertificateChainError(f"{field}.{oid}", "missing or malformed")
        return item[1]

    tcb = _pairs(need(f"{base}.2", _SEQUENCE), f"{field}.tcb")
    comps = []
    for i in range(1, 17):
        item = tcb.get(f"{base}.2.{i}")
        if item is None or item[0] != _INTEGER or not item[1]:
            raise CertificateChainError(f"{field}.tcb.{i}", "missing TCB component SVN")
        comps.append(int.from_bytes(item[1], "big", signed=True))
    pcesvn_item = tcb.get(f"{base}.2.17")
    cpusvn_item = tcb.get(f"{base}.2.18")
    if pcesvn_item is None or pcesvn_item[0] != _INTEGER or not pcesvn_item[1]:
        raise CertificateChainError(f"{field}.tcb.pcesvn", "missing PCESVN")
    if cpusvn_item is None or cpusvn_item[0] != _OCTET_STRING or len(cpusvn_item[1]) != 16:
        raise CertificateChainError(f"{field}.tcb.cpusvn", "missing CPUSVN")
    sgx_type = need(f"{base}.5", _ENUMERATED)
    return PckExtension(
        ppid=need(f"{base}.1", _OCTET_STRING, 16),
        cpusvn_components=tuple(comps),
        pcesvn=int.from_bytes(pcesvn_item[1], "big", signed=True),
        cpusvn=cpusvn_item[1],
        pceid=need(f"{base}.3", _OCTET_STRING, 2),
        fmspc=need(f"{base}.4", _OCTET_STRING, 6),
        sgx_type=int.from_bytes(sgx_type, "big"),
    )


# --- writer (simulated PCK certificates) ---------------------------------------------------


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return _tlv(_OID, bytes(out))


def _int(value: int) -> bytes:
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _pair(oid: str, value: bytes) -> bytes:
    return _tlv(_SEQUENCE, _oid(oid) + value)


def encode_sgx_extension(ext: PckExtension, *, platform_instance_id: bytes | None = None) -> bytes:
    """DER value of the SGX extension for `ext` (Intel's layout, platform CA flavour)."""
    base = SGX_EXTENSION_OID
    tcb = b"".join(_pair(f"{base}.2.{i + 1}", _int(v)) for i, v in enumerate(ext.cpusvn_components))
    tcb += _pair(f"{base}.2.17", _int(ext.pcesvn))
    tcb += _pair(f"{base}.2.18", _tlv(_OCTET_STRING, ext.cpusvn))
    items = [
        _pair(f"{base}.1", _tlv(_OCTET_STRING, ext.ppid)),
        _pair(f"{base}.2", _tlv(_SEQUENCE, tcb)),
        _pair(f"{base}.3", _tlv(_OCTET_STRING, ext.pceid)),
        _pair(f"{base}.4", _tlv(_OCTET_STRING, ext.fmspc)),
        _pair(f"{base}.5", _tlv(_ENUMERATED, bytes([ext.sgx_type]))),
    ]
    if platform_instance_id is not None:
        false = _tlv(_BOOLEAN, b"\x00")
        config = b"".join(_pair(f"{base}.7.{i}", false) for i in (1, 2, 3))
        items.append(_pair(f"{base}.6", _tlv(_OCTET_STRING, platform_instance_id)))
        items.append(_pair(f"{base}.7", _tlv(_SEQUENCE, config)))
    return _tlv(_SEQUENCE, b"".join(items))
