"""Parse Intel DCAP quotes (v3 SGX, v4 TDX, v5 typed body) from bytes into structures.

Parsing is pure slicing: no certificate is decoded here (that is verification's job), so
every malformed input ends in a `QuoteFormatError` subclass naming the field, never in
another exception. The quote's length is computed from its structure; bytes after the
signature data are unsigned padding and are ignored (real quote files carry it).

Layout: ../shared/docs/tdx-dcap-notes.md §1 (Intel sgx_quote_{3,4,5}.h). Integers are
little-endian; ECDSA values are big-endian r‖s and x‖y.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from attestation.exceptions import QuoteFormatError, QuoteTruncated, UnsupportedQuote

HEADER_LEN: Final = 48
SGX_REPORT_LEN: Final = 384
TD10_LEN: Final = 584
TD15_LEN: Final = 648
TD15EX_LEN: Final = 885

INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
AK_TYPE_ECDSA_P256: Final = 2
TEE_SGX: Final = 0x00000000
TEE_TDX: Final = 0x00000081

BODY_SGX: Final = 1
BODY_TD10: Final = 2
BODY_TD15: Final = 3
BODY_TD15EX: Final = 4
BODY_SIZES: Final = {
    BODY_SGX: SGX_REPORT_LEN,
    BODY_TD10: TD10_LEN,
    BODY_TD15: TD15_LEN,
    BODY_TD15EX: TD15EX_LEN,
}

CERT_PCK_CHAIN: Final = 5
CERT_QE_REPORT: Final = 6


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    """The 48-byte quote header."""

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes
    raw: bytes

    @property
    def is_tdx(self) -> bool:
        return self.tee_type == TEE_TDX


@dataclass(frozen=True, slots=True)
class EnclaveReport:
    """An SGX REPORT body (384 bytes): the v3 quote body and the QE report."""

    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        """SGX ATTRIBUTES.DEBUG (flags bit 1)."""
        return bool(self.attributes[0] & 0x02)

    @classmethod
    def parse(cls, raw: bytes) -> EnclaveReport:
        if len(raw) != SGX_REPORT_LEN:
            raise QuoteTruncated("enclave_report", f"need {SGX_REPORT_LEN} bytes, got {len(raw)}")
        misc_select, isv_prod_id, isv_svn = (
            struct.unpack_from("<I", raw, 16)[0],
            *struct.unpack_from("<HH", raw, 256),
        )
        return cls(
            cpu_svn=raw[0:16],
            misc_select=misc_select,
            attributes=raw[48:64],
            mr_enclave=raw[64:96],
            mr_signer=raw[128:160],
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            report_data=raw[320:384],
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class TdReport:
    """A TD report body: 1.0 (584 bytes), 1.5 (648) or 1.5 "ex" (885)."""

    body_type: int
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None
    mr_service_td: bytes | None
    extra: bytes | None
    raw: bytes

    @property
    def td_attributes_int(self) -> int:
        return int.from_bytes(self.td_attributes, "little")

    @property
    def seam_attributes_int(self) -> int:
        return int.from_bytes(self.seam_attributes, "little")

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    @property
    def extra_fields(self) -> dict[str, bytes | int]:
        """The TD 1.5 "ex" fields (body type 4), empty for other bodies."""
        e = self.extra
        if e is None:
            return {}
        return {
            "vmid": e[0],
            "td_id": e[1:33],
            "dev_info": e[33:81],
            "init_service_td_hash": e[81:129],
            "init_service_td_attributes": e[129:137],
            "init_cpu_svn": e[137:153],
            "init_tee_tcb_svn": e[153:169],
            "init_tee_fmspc": e[169:181],
            "cur_service_td_hash": e[181:229],
            "cur_service_td_attributes": e[229:237],
        }

    @classmethod
    def parse(cls, raw: bytes, body_type: int) -> TdReport:
        if len(raw) != BODY_SIZES[body_type]:
            raise QuoteTruncated("td_report", f"need {BODY_SIZES[body_type]} bytes")
        td15 = body_type in (BODY_TD15, BODY_TD15EX)
        return cls(
            body_type=body_type,
            tee_tcb_svn=raw[0:16],
            mr_seam=raw[16:64],
            mr_signer_seam=raw[64:112],
            seam_attributes=raw[112:120],
            td_attributes=raw[120:128],
            xfam=raw[128:136],
            mr_td=raw[136:184],
            mr_config_id=raw[184:232],
            mr_owner=raw[232:280],
            mr_owner_config=raw[280:328],
            rtmr0=raw[328:376],
            rtmr1=raw[376:424],
            rtmr2=raw[424:472],
            rtmr3=raw[472:520],
            report_data=raw[520:584],
            tee_tcb_svn2=raw[584:600] if td15 else None,
            mr_service_td=raw[600:648] if td15 else None,
            extra=raw[648:885] if body_type == BODY_TD15EX else None,
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class QeCertification:
    """Certification data of type 6: the QE report, its PCK signature and the PCK chain."""

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_type: int
    cert_data: bytes


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed quote. `raw` is the quote proper (padding stripped); `signed_length` bytes
    of it are covered by the attestation key's signature."""

    header: QuoteHeader
    body_type: int
    body: TdReport | EnclaveReport
    signed_length: int
    signature: bytes
    attestation_key: bytes
    outer_cert_type: int
    qe: QeCertification
    raw: bytes

    @property
    def is_tdx(self) -> bool:
        return self.header.is_tdx

    @property
    def signed_data(self) -> bytes:
        return self.raw[: self.signed_length]

    @property
    def td_report(self) -> TdReport:
        if not isinstance(self.body, TdReport):
            raise UnsupportedQuote("body", "not a TDX quote")
        return self.body

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    @property
    def pck_chain_pem(self) -> bytes:
        """The PCK certificate chain (PEM, leaf first), NUL terminator removed."""
        return self.qe.cert_data.rstrip(b"\x00")


class _Reader:
    """Bounds-checked cursor; every read names the field it is for."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise QuoteTruncated(
                field, f"need {n} bytes at offset {self.pos}, data ends at {self.end}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, field: str) -> int:
        value: int = struct.unpack("<H", self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = struct.unpack("<I", self.take(4, field))[0]
        return value

    def finish(self, field: str) -> None:
        if self.pos != self.end:
            raise QuoteFormatError(field, f"{self.end - self.pos} unexpected bytes after the data")


def _parse_header(data: bytes) -> QuoteHeader:
    if len(data) < HEADER_LEN:
        raise QuoteTruncated("header", f"need {HEADER_LEN} bytes, got {len(data)}")
    version, ak_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", data, 0)
    header = QuoteHeader(
        version=version,
        attestation_key_type=ak_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=data[12:28],
        user_data=data[28:48],
        raw=data[:HEADER_LEN],
    )
    if version not in (3, 4, 5):
        raise UnsupportedQuote("header.version", f"version {version} (supported: 3, 4, 5)")
    if ak_type != AK_TYPE_ECDSA_P256:
        raise UnsupportedQuote(
            "header.attestation_key_type", f"type {ak_type} (only 2 = ECDSA-256-with-P-256)"
        )
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise QuoteFormatError("header.tee_type", f"unknown TEE type {tee_type:#x}")
    if version == 3 and tee_type != TEE_SGX:
        raise QuoteFormatError("header.tee_type", "a v3 quote is SGX (TEE type 0)")
    if version == 4 and tee_type != TEE_TDX:
        # Intel defines v4 SGX quotes too, but no QE emits them; we accept TDX only here.
        raise UnsupportedQuote("header.tee_type", "v4 quotes are accepted for TDX (0x81) only")
    if header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise UnsupportedQuote("header.qe_vendor_id", "not Intel's QE vendor id")
    return header


def _parse_body(data: bytes, header: QuoteHeader) -> tuple[int, TdReport | EnclaveReport, int]:
    """Return (body_type, body, signed_length)."""
    r = _Reader(data, HEADER_LEN, len(data))
    if header.version == 3:
        return BODY_SGX, EnclaveReport.parse(r.take(SGX_REPORT_LEN, "body")), r.pos
    if header.version == 4:
        return BODY_TD10, TdReport.parse(r.take(TD10_LEN, "body"), BODY_TD10), r.pos
    body_type = r.u16("body.type")
    body_size = r.u32("body.size")
    if body_type not in BODY_SIZES:
        raise UnsupportedQuote("body.type", f"unknown v5 body type {body_type}")
    if (body_type == BODY_SGX) != (header.tee_type == TEE_SGX):
        raise QuoteFormatError("body.type", f"body type {body_type} does not match the TEE type")
    if body_size != BODY_SIZES[body_type]:
        raise QuoteFormatError(
            "body.size",
            f"body type {body_type} needs size {BODY_SIZES[body_type]}, not {body_size}",
        )
    raw = r.take(body_size, "body")
    if body_type == BODY_SGX:
        return body_type, EnclaveReport.parse(raw), r.pos
    return body_type, TdReport.parse(raw, body_type), r.pos


def _parse_qe_certification(r: _Reader, prefix: str) -> QeCertification:
    qe_raw = r.take(SGX_REPORT_LEN, f"{prefix}.qe_report")
    qe_sig = r.take(64, f"{prefix}.qe_report_signature")
    auth_len = r.u16(f"{prefix}.qe_auth_data.size")
    auth = r.take(auth_len, f"{prefix}.qe_auth_data")
    cert_type = r.u16(f"{prefix}.certification_data.type")
    if cert_type != CERT_PCK_CHAIN:
        raise UnsupportedQuote(
            f"{prefix}.certification_data.type",
            f"type {cert_type}; only 5 (PCK certificate chain) is supported",
        )
    cert_size = r.u32(f"{prefix}.certification_data.size")
    cert_data = r.take(cert_size, f"{prefix}.certification_data")
    r.finish(f"{prefix}.certification_data")
    return QeCertification(
        qe_report=EnclaveReport.parse(qe_raw),
        qe_report_signature=qe_sig,
        qe_auth_data=auth,
        cert_type=cert_type,
        cert_data=cert_data,
    )


def parse_quote(data: bytes) -> Quote:
    """Parse a DCAP quote; raise a `QuoteFormatError` subclass naming the bad field."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise QuoteFormatError("quote", "quote must be bytes")
    data = bytes(data)
    header = _parse_header(data)
    body_type, body, signed_length = _parse_body(data, header)
    r = _Reader(data, signed_length, len(data))
    sig_len = r.u32("signature_data.size")
    end = signed_length + 4 + sig_len
    if end > len(data):
        raise QuoteTruncated("signature_data.size", f"declares {sig_len} bytes, quote ends first")
    r.end = end
    signature = r.take(64, "signature_data.signature")
    attestation_key = r.take(64, "signature_data.attestation_key")
    if header.version == 3:
        outer_type = CERT_QE_REPORT  # v3 carries the QE report inline, without a type-6 wrapper
        qe = _parse_qe_certification(r, "signature_data")
    else:
        outer_type = r.u16("signature_data.certification_data.type")
        if outer_type != CERT_QE_REPORT:
            raise UnsupportedQuote(
                "signature_data.certification_data.type",
                f"type {outer_type}; a v4/v5 quote must carry type 6 (QE report certification)",
            )
        outer_size = r.u32("signature_data.certification_data.size")
        inner = _Reader(data, r.pos, r.pos + outer_size)
        if inner.end > r.end:
            raise QuoteTruncated("signature_data.certification_data.size", "exceeds signature data")
        qe = _parse_qe_certification(inner, "qe_report_certification_data")
        r.pos = inner.end
    r.finish("signature_data")
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        signed_length=signed_length,
        signature=signature,
        attestation_key=attestation_key,
        outer_cert_type=outer_type,
        qe=qe,
        raw=data[:end],
    )


def read_quote_bytes(data: bytes) -> bytes:
    """Quote file contents as bytes: raw binary, or hex text (optional 0x, whitespace)."""
    text = data.strip()
    if text[:2] in (b"0x", b"0X"):
        text = text[2:]
    if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode("ascii"))
    return data
