"""Collateral: the CRLs, signed TCB info and QE identity a quote is verified against.

Two input forms: dcap-qvl's `QuoteCollateralV3` JSON (CRLs and signatures hex, chains PEM,
`tcb_info` / `qe_identity` the exact signed JSON text) and Intel PCS / PCCS v4 API responses
(bodies `{"tcbInfo": {...}, "signature": ".."}` with the issuer chain in a URL-encoded
header). The signed JSON is kept as the exact text the signature covers; it is decoded into
typed structures separately (`TcbInfo`, `QeIdentity`).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote

from attestation.exceptions import CollateralFormatError

TCB_STATUSES: Final = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)


@dataclass(frozen=True, slots=True)
class Collateral:
    """Verification collateral for one platform (FMSPC) and TEE type."""

    pck_crl_issuer_chain: str
    root_ca_crl: bytes
    pck_crl: bytes
    tcb_info_issuer_chain: str
    tcb_info: str
    tcb_info_signature: bytes
    qe_identity_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes
    pck_certificate_chain: str | None = None

    @property
    def digest(self) -> bytes:
        """SHA-256 over every item: the key under which verified checks are cached."""
        h = hashlib.sha256()
        for part in (
            self.pck_crl_issuer_chain.encode(),
            self.root_ca_crl,
            self.pck_crl,
            self.tcb_info_issuer_chain.encode(),
            self.tcb_info.encode(),
            self.tcb_info_signature,
            self.qe_identity_issuer_chain.encode(),
            self.qe_identity.encode(),
            self.qe_identity_signature,
        ):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.digest()

    @classmethod
    def from_json(cls, text: str | bytes | Mapping[str, Any]) -> Collateral:
        """Decode dcap-qvl's `QuoteCollateralV3` JSON form."""
        if isinstance(text, Mapping):
            obj: Any = text
        else:
            try:
                obj = json.loads(text)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CollateralFormatError("collateral", f"not JSON: {exc}") from None
        if not isinstance(obj, Mapping):
            raise CollateralFormatError("collateral", "expected a JSON object")
        pck_chain = obj.get("pck_certificate_chain")
        return cls(
            pck_crl_issuer_chain=_str(obj, "pck_crl_issuer_chain"),
            root_ca_crl=_hex(obj, "root_ca_crl"),
            pck_crl=_hex(obj, "pck_crl"),
            tcb_info_issuer_chain=_str(obj, "tcb_info_issuer_chain"),
            tcb_info=_str(obj, "tcb_info"),
            tcb_info_signature=_hex(obj, "tcb_info_signature"),
            qe_identity_issuer_chain=_str(obj, "qe_identity_issuer_chain"),
            qe_identity=_str(obj, "qe_identity"),
            qe_identity_signature=_hex(obj, "qe_identity_signature"),
            pck_certificate_chain=pck_chain if isinstance(pck_chain, str) else None,
        )

    def to_json(self) -> str:
        """Encode in dcap-qvl's `QuoteCollateralV3` JSON form."""
        obj: dict[str, str] = {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain,
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info,
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity,
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }
        if self.pck_certificate_chain is not None:
            obj["pck_certificate_chain"] = self.pck_certificate_chain
        return json.dumps(obj, indent=1)

    @classmethod
    def from_pcs(
        cls,
        *,
        tcb_info_body: bytes | str,
        tcb_info_issuer_chain: str,
        qe_identity_body: bytes | str,
        qe_identity_issuer_chain: str,
        pck_crl: bytes,
        pck_crl_issuer_chain: str,
        root_ca_crl: bytes,
    ) -> Collateral:
        """Assemble collateral from Intel PCS / PCCS v4 API responses.

        Issuer chains may be URL-encoded (as in the PCS response headers); CRLs may be DER,
        PEM or hex-encoded DER (PCCS serves the root CA CRL as hex).
        """
        tcb_text, tcb_sig = split_signed_body(tcb_info_body, "tcbInfo")
        qe_text, qe_sig = split_signed_body(qe_identity_body, "enclaveIdentity")
        return cls(
            pck_crl_issuer_chain=unquote(pck_crl_issuer_chain),
            root_ca_crl=crl_to_der(root_ca_crl, "root_ca_crl"),
            pck_crl=crl_to_der(pck_crl, "pck_crl"),
            tcb_info_issuer_chain=unquote(tcb_info_issuer_chain),
            tcb_info=tcb_text,
            tcb_info_signature=tcb_sig,
            qe_identity_issuer_chain=unquote(qe_identity_issuer_chain),
            qe_identity=qe_text,
            qe_identity_signature=qe_sig,
        )

    def tcb_info_body(self) -> str:
        """The PCS response body this collateral's TCB info came in."""
        return f'{{"tcbInfo":{self.tcb_info},"signature":"{self.tcb_info_signature.hex()}"}}'

    def qe_identity_body(self) -> str:
        """The PCS response body this collateral's QE identity came in."""
        sig = self.qe_identity_signature.hex()
        return f'{{"enclaveIdentity":{self.qe_identity},"signature":"{sig}"}}'


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise CollateralFormatError(key, "missing or not a string")
    return value


def _hex(obj: Mapping[str, Any], key: str) -> bytes:
    value = _str(obj, key)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CollateralFormatError(key, "not hex") from None


def crl_to_der(data: bytes, field: str) -> bytes:
    """A CRL as DER, given DER, PEM or hex text."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        lines = [ln for ln in stripped.splitlines() if ln and not ln.startswith(b"-----")]
        try:
            return binascii.a2b_base64(b"".join(lines))
        except binascii.Error:
            raise CollateralFormatError(field, "bad PEM") from None
    if (
        stripped
        and len(stripped) % 2 == 0
        and all(c in b"0123456789abcdefABCDEF" for c in stripped)
    ):
        try:
            return bytes.fromhex(stripped.decode())
        except ValueError:
            raise CollateralFormatError(field, "bad hex") from None
    return data


def split_signed_body(body: bytes | str, key: str) -> tuple[str, bytes]:
    """Return (exact JSON text of `body[key]`, signature) of a PCS signed response.

    The signature covers the bytes of the member's value exactly as served, so the text is
    cut out of the body with the JSON scanner's offsets rather than re-serialized.
    """
    text = body.decode() if isinstance(body, bytes) else body
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    values: dict[str, Any] = {}
    try:
        pos = _skip_ws(text, 0)
        if text[pos] != "{":
            raise ValueError("not an object")
        pos = _skip_ws(text, pos + 1)
        while text[pos] != "}":
            name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
            pos = _skip_ws(text, pos)
            if text[pos] != ":":
                raise ValueError("expected ':'")
            start = _skip_ws(text, pos + 1)
            value, end = decoder.raw_decode(text, start)
            spans[name], values[name] = (start, end), value
            pos = _skip_ws(text, end)
            if text[pos] == ",":
                pos = _skip_ws(text, pos + 1)
    except (ValueError, IndexError) as exc:
        raise CollateralFormatError(key, f"bad PCS response body: {exc}") from None
    if key not in spans or not isinstance(values.get("signature"), str):
        raise CollateralFormatError(key, f"response lacks {key!r} or 'signature'")
    start, end = spans[key]
    try:
        signature = bytes.fromhex(values["signature"])
    except ValueError:
        raise CollateralFormatError(f"{key}.signature", "not hex") from None
    return text[start:end], signature


def _skip_ws(text: str, pos: int) -> int:
    while text[pos] in " \t\r\n":
        pos += 1
    return pos


# --- typed views of the signed JSON ---------------------------------------------------------


def parse_time(value: object, field: str) -> int:
    """RFC 3339 UTC time ("2025-06-19T10:16:03Z") as a Unix timestamp."""
    if not isinstance(value, str):
        raise CollateralFormatError(field, "missing or not a string")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise CollateralFormatError(field, f"bad time {value!r}") from None


def _get(obj: Mapping[str, Any], key: str, kind: type, field: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CollateralFormatError(f"{field}.{key}", f"missing or not {kind.__name__}")
    return value


def _hexfield(obj: Mapping[str, Any], key: str, field: str, size: int | None = None) -> bytes:
    value = _get(obj, key, str, field)
    try:
        out = bytes.fromhex(value)
    except ValueError:
        raise CollateralFormatError(f"{field}.{key}", "not hex") from None
    if size is not None and len(out) != size:
        raise CollateralFormatError(f"{field}.{key}", f"need {size} bytes")
    return out


def _status(obj: Mapping[str, Any], field: str) -> str:
    status = _get(obj, "tcbStatus", str, field)
    if status not in TCB_STATUSES:
        raise CollateralFormatError(f"{field}.tcbStatus", f"unknown status {status!r}")
    return str(status)


def _advisories(obj: Mapping[str, Any], field: str) -> tuple[str, ...]:
    ids = obj.get("advisoryIDs", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CollateralFormatError(f"{field}.advisoryIDs", "not a list of strings")
    return tuple(ids)


@dataclass(frozen=True, slots=True)
class TcbLevel:
    """A platform TCB level: SGX components, PCESVN, TDX components (TDX only)."""

    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: int
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IsvLevel:
    """A TCB level keyed by one ISVSVN (TDX module identity and QE identity levels)."""

    isvsvn: int
    tcb_date: int
    status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TdxModuleIdentity:
    """TDX module signer and attributes (`tdxModule` or one `tdxModuleIdentities` entry)."""

    id: str
    mrsigner: bytes
    attributes: int
    attributes_mask: int
    levels: tuple[IsvLevel, ...]


@dataclass(frozen=True, slots=True)
class TcbInfo:
    """Decoded `tcbInfo` (version 3)."""

    id: str
    version: int
    issue_date: int
    next_update: int
    fmspc: bytes
    pce_id: bytes
    tcb_evaluation_data_number: int
    levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]

    @classmethod
    def parse(cls, text: str) -> TcbInfo:
        f = "tcb_info"
        try:
            obj = json.loads(text)
        except ValueError:
            raise CollateralFormatError(f, "not JSON") from None
        if not isinstance(obj, dict):
            raise CollateralFormatError(f, "not an object")
        levels = []
        for i, lv in enumerate(_get(obj, "tcbLevels", list, f)):
            lf = f"{f}.tcbLevels[{i}]"
            if not isinstance(lv, dict):
                raise CollateralFormatError(lf, "not an object")
            tcb = _get(lv, "tcb", dict, lf)
            tf = f"{lf}.tcb"
            sgx = _components(tcb, "sgxtcbcomponents", tf)
            tdx = _components(tcb, "tdxtcbcomponents", tf) if "tdxtcbcomponents" in tcb else None
            levels.append(
                TcbLevel(
                    sgx_components=sgx,
                    pcesvn=_get(tcb, "pcesvn", int, tf),
                    tdx_components=tdx,
                    tcb_date=parse_time(lv.get("tcbDate"), f"{lf}.tcbDate"),
                    status=_status(lv, lf),
                    advisory_ids=_advisories(lv, lf),
                )
            )
        module = None
        if "tdxModule" in obj:
            module = _module(_get(obj, "tdxModule", dict, f), f"{f}.tdxModule", with_levels=False)
        identities = tuple(
            _module(m, f"{f}.tdxModuleIdentities[{i}]", with_levels=True)
            for i, m in enumerate(obj.get("tdxModuleIdentities", []))
        )
        return cls(
            id=_get(obj, "id", str, f),
            version=_get(obj, "version", int, f),
            issue_date=parse_time(obj.get("issueDate"), f"{f}.issueDate"),
            next_update=parse_time(obj.get("nextUpdate"), f"{f}.nextUpdate"),
            fmspc=_hexfield(obj, "fmspc", f, 6),
            pce_id=_hexfield(obj, "pceId", f, 2),
            tcb_evaluation_data_number=_get(obj, "tcbEvaluationDataNumber", int, f),
            levels=tuple(levels),
            tdx_module=module,
            tdx_module_identities=identities,
        )


_INT_ONLY: Final = {int}


def _components(tcb: Mapping[str, Any], key: str, field: str) -> tuple[int, ...]:
    comps = _get(tcb, key, list, field)
    try:
        out = tuple([c["svn"] for c in comps])
    except (TypeError, KeyError):
        raise CollateralFormatError(f"{field}.{key}", "components need an 'svn'") from None
    if len(out) != 16 or set(map(type, out)) != _INT_ONLY:
        raise CollateralFormatError(f"{field}.{key}", "need 16 integer components")
    return out


def _isv_levels(obj: Mapping[str, Any], field: str) -> tuple[IsvLevel, ...]:
    out = []
    for i, lv in enumerate(_get(obj, "tcbLevels", list, field)):
        lf = f"{field}.tcbLevels[{i}]"
        if not isinstance(lv, dict):
            raise CollateralFormatError(lf, "not an object")
        out.append(
            IsvLevel(
                isvsvn=_get(_get(lv, "tcb", dict, lf), "isvsvn", int, f"{lf}.tcb"),
                tcb_date=parse_time(lv.get("tcbDate"), f"{lf}.tcbDate"),
                status=_status(lv, lf),
                advisory_ids=_advisories(lv, lf),
            )
        )
    return tuple(out)


def _module(obj: Any, field: str, *, with_levels: bool) -> TdxModuleIdentity:
    if not isinstance(obj, dict):
        raise CollateralFormatError(field, "not an object")
    return TdxModuleIdentity(
        id=_get(obj, "id", str, field) if with_levels else "",
        mrsigner=_hexfield(obj, "mrsigner", field, 48),
        attributes=int.from_bytes(_hexfield(obj, "attributes", field, 8), "little"),
        attributes_mask=int.from_bytes(_hexfield(obj, "attributesMask", field, 8), "little"),
        levels=_isv_levels(obj, field) if with_levels else (),
    )


@dataclass(frozen=True, slots=True)
class QeIdentity:
    """Decoded `enclaveIdentity` (QE / TD_QE)."""

    id: str
    version: int
    issue_date: int
    next_update: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[IsvLevel, ...]

    @classmethod
    def parse(cls, text: str) -> QeIdentity:
        f = "qe_identity"
        try:
            obj = json.loads(text)
        except ValueError:
            raise CollateralFormatError(f, "not JSON") from None
        if not isinstance(obj, dict):
            raise CollateralFormatError(f, "not an object")
        return cls(
            id=_get(obj, "id", str, f),
            version=_get(obj, "version", int, f),
            issue_date=parse_time(obj.get("issueDate"), f"{f}.issueDate"),
            next_update=parse_time(obj.get("nextUpdate"), f"{f}.nextUpdate"),
            miscselect=int.from_bytes(_hexfield(obj, "miscselect", f, 4), "big"),
            miscselect_mask=int.from_bytes(_hexfield(obj, "miscselectMask", f, 4), "big"),
            attributes=_hexfield(obj, "attributes", f, 16),
            attributes_mask=_hexfield(obj, "attributesMask", f, 16),
            mrsigner=_hexfield(obj, "mrsigner", f, 32),
            isvprodid=_get(obj, "isvprodid", int, f),
            levels=_isv_levels(obj, f),
        )


_ASCII_WHITESPACE: Final = b" \t\n\r\x0b\x0c"


def pem_certificates(pem: str | bytes, field: str) -> list[bytes]:
    """Split a PEM bundle into DER certificates (order kept)."""
    # Characters beyond latin-1 become "?", which the strict base64 decoder rejects.
    data = pem.encode("latin-1", "replace") if isinstance(pem, str) else pem
    out: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while (start := data.find(begin, pos)) != -1:
        stop = data.find(end, start)
        if stop == -1:
            raise CollateralFormatError(field, "unterminated PEM certificate")
        # ASCII whitespace between base64 characters is layout; anything else (including
        # any non-ASCII byte) is malformed and rejected by the strict decoder.
        body = data[start + len(begin) : stop].translate(None, _ASCII_WHITESPACE)
        try:
            out.append(binascii.a2b_base64(body, strict_mode=True))
        except binascii.Error:
            raise CollateralFormatError(field, "bad base64 in PEM certificate") from None
        pos = stop + len(end)
    if not out:
        raise CollateralFormatError(field, "no PEM certificate")
    return out


__all__: Sequence[str] = [
    "Collateral",
    "IsvLevel",
    "QeIdentity",
    "TcbInfo",
    "TcbLevel",
    "TdxModuleIdentity",
    "pem_certificates",
    "split_signed_body",
]
