"""The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1).

`cryptography` exposes an unknown extension only as its raw DER value, and the structure
(nested SEQUENCEs of {OID, value}) needs just a handful of DER types, so a minimal DER
reader/writer lives here rather than pulling in a full ASN.1 library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from attestation.der import oid_to_str, spans, tlv_at
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


def _pairs(data: bytes, start: int, end: int, field: str) -> dict[str, tuple[int, bytes]]:
    """A SEQUENCE OF SEQUENCE {OID, value} in data[start:end] as {dotted oid: (tag, value)}."""
    out: dict[str, tuple[int, bytes]] = {}
    for tag, _, inner, inner_end in spans(data, start, end, _FIELD):
        # Fast path for the only valid shape, exactly two TLVs; anything else goes through
        # `spans`, which raises the same error a full walk would.
        oid_tag = value_end = -1
        if tag == _SEQUENCE and inner < inner_end:
            oid_tag, oid_start, oid_end = tlv_at(data, inner, inner_end, _FIELD)
            if oid_end < inner_end:
                value_tag, value, value_end = tlv_at(data, oid_end, inner_end, _FIELD)
        if value_end != inner_end or oid_tag != _OID:
            if tag == _SEQUENCE:
                spans(data, inner, inner_end, _FIELD)
            raise CertificateChainError(field, "expected SEQUENCE {OID, value}")
        out[oid_to_str(data[oid_start:oid_end], _FIELD)] = (value_tag, data[value:value_end])
    return out


_TCB_OIDS: Final = tuple(f"{SGX_EXTENSION_OID}.2.{i}" for i in range(1, 17))


def parse_sgx_extension(der_value: bytes) -> PckExtension:
    """Decode the extension's DER value (the OCTET STRING contents)."""
    field = "pck_certificate.sgx_extension"
    tag, body, end = tlv_at(der_value, 0, len(der_value), _FIELD)
    if tag != _SEQUENCE or end != len(der_value):
        raise CertificateChainError(field, "not a single SEQUENCE")
    top = _pairs(der_value, body, end, field)
    base = SGX_EXTENSION_OID

    def need(oid: str, tag: int, size: int | None = None) -> bytes:
        item = top.get(oid)
        if item is None or item[0] != tag or (size is not None and len(item[1]) != size):
            raise CertificateChainError(f"{field}.{oid}", "missing or malformed")
        return item[1]

    tcb_value = need(f"{base}.2", _SEQUENCE)
    tcb = _pairs(tcb_value, 0, len(tcb_value), f"{field}.tcb")
    comps = []
    for i, oid in enumerate(_TCB_OIDS, 1):
        item = tcb.get(oid)
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
