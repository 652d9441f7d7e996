"""Simulated TDX for machines without TDX (DESIGN §3).

Emits quotes of the real v4 format through a development PKI generated per deployment:

    dev root CA (P-256, self-signed)
      ├─ dev PCK Platform CA ── dev PCK certificate (SGX extension: PPID, TCB, PCEID, FMSPC)
      │                            └─ signs the QE report, whose REPORTDATA binds the
      │                               attestation key, which signs the quote
      └─ dev TCB Signing ── signs the TCB info and QE identity JSON

with matching collateral (TCB info, QE identity, root and PCK CRLs). `attestation.verify`
runs its full, unchanged DCAP path over these quotes, so they verify exactly when the dev
root is among the verifier's trusted roots, and never against Intel's root alone.

The development keys protect nothing real: a simulated quote proves no TEE. Give a
`passphrase` to keep them encrypted on disk (PKCS#8, best available encryption).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from attestation.collateral import Collateral
from attestation.exceptions import ProviderError
from attestation.measurements import Measurements
from attestation.pck import SGX_EXTENSION_OID, PckExtension, encode_sgx_extension
from attestation.quote import INTEL_QE_VENDOR_ID, TEE_TDX

CERT_NOT_BEFORE: Final = datetime(2020, 1, 1, tzinfo=UTC)
CERT_NOT_AFTER: Final = datetime(2049, 12, 31, tzinfo=UTC)
DEV_FMSPC: Final = bytes.fromhex("4E4F58000000")  # "NOX" + zeros: never an Intel FMSPC
DEV_PCEID: Final = bytes(2)
DEV_CPUSVN: Final = bytes([5, 5, 2, 2, 4, 1, 0, 3] + [0] * 8)
DEV_PCESVN: Final = 13
DEV_TEE_TCB_SVN: Final = bytes([5, 1, 2] + [0] * 13)  # module SVN 5, module version 1 (TDX_01)
DEV_QE_SVN: Final = 4
DEV_QE_MRSIGNER: Final = hashlib.sha256(b"nox dev TD_QE signer").digest()
DEV_QE_MRENCLAVE: Final = hashlib.sha256(b"nox dev TD_QE").digest()
DEV_QE_ATTRIBUTES: Final = bytes.fromhex("11000000000000000000000000000000")
DEV_MR_SEAM: Final = hashlib.sha384(b"nox dev TDX module").digest()
DEFAULT_MR_TD: Final = hashlib.sha384(b"nox simulated TD").digest()
COLLATERAL_VALIDITY: Final = 30 * 86400
_KEYS: Final = ("root", "pck_ca", "pck", "tcb_signing", "attestation")


def _sig64(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nox development (simulated TDX)"),
        ]
    )


def _cert(
    subject_cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    extension: bytes | None = None,
) -> x509.Certificate:
    subject = _name(subject_cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(CERT_NOT_BEFORE)
        .not_valid_after(CERT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if extension is not None:
        oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, extension), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimulatedTdx:
    """A simulated TDX platform and its per-deployment development PKI."""

    keys: dict[str, ec.EllipticCurvePrivateKey] = field(repr=False)
    root: x509.Certificate
    pck_ca: x509.Certificate
    pck: x509.Certificate
    tcb_signing: x509.Certificate
    qe_id: bytes
    clock: Callable[[], float] = field(default=lambda: datetime.now(UTC).timestamp(), repr=False)
    _collateral: dict[tuple[int, bool], Collateral] = field(default_factory=dict, repr=False)

    # --- creation and persistence ------------------------------------------------------------

    @classmethod
    def generate(cls, *, clock: Callable[[], float] | None = None) -> SimulatedTdx:
        """A new dev PKI in memory."""
        keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in _KEYS}
        root = _cert(
            "Nox Dev SGX Root CA", keys["root"], None, keys["root"], ca=True, path_length=1
        )
        pck_ca = _cert(
            "Nox Dev SGX PCK Platform CA",
            keys["pck_ca"],
            root,
            keys["root"],
            ca=True,
            path_length=0,
        )
        ext = PckExtension(
            ppid=os.urandom(16),
            cpusvn_components=tuple(DEV_CPUSVN),
            pcesvn=DEV_PCESVN,
            cpusvn=DEV_CPUSVN,
            pceid=DEV_PCEID,
            fmspc=DEV_FMSPC,
            sgx_type=1,
        )
        pck = _cert(
            "Nox Dev SGX PCK Certificate",
            keys["pck"],
            pck_ca,
            keys["pck_ca"],
            ca=False,
            extension=encode_sgx_extension(ext, platform_instance_id=os.urandom(16)),
        )
        tcb = _cert("Nox Dev SGX TCB Signing", keys["tcb_signing"], root, keys["root"], ca=False)
        sim = cls(keys, root, pck_ca, pck, tcb, qe_id=os.urandom(16))
        if clock is not None:
            sim.clock = clock
        return sim

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | None = None,
        clock: Callable[[], float] | None = None,
    ) -> SimulatedTdx:
        """Generate a dev PKI and store it in `directory` (created, must not hold one yet)."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (path / "meta.json").exists():
            raise ProviderError("simulated_tdx.dir", f"{path} already holds a dev PKI")
        sim = cls.generate(clock=clock)
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        # state of the dev PKI: every file 0600 (the keys must be; the rest follows)
        for name, key in sim.keys.items():
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
            )
            _write_new_private(path / f"{name}.key.pem", pem)
        for name in ("root", "pck_ca", "pck", "tcb_signing"):
            cert: x509.Certificate = getattr(sim, name)
            _write_new_private(path / f"{name}.der", cert.public_bytes(serialization.Encoding.DER))
        _write_new_private(path / "meta.json", json.dumps({"qe_id": sim.qe_id.hex()}).encode())
        return sim

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        passphrase: bytes | None = None,
        clock: Callable[[], float] | None = None,
    ) -> SimulatedTdx:
        """Load the dev PKI `create` stored in `directory`."""
        path = Path(directory)
        try:
            keys = {}
            for name in _KEYS:
                key = serialization.load_pem_private_key(
                    (path / f"{name}.key.pem").read_bytes(), passphrase
                )
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise ProviderError("simulated_tdx.keys", f"{name} is not an EC key")
                keys[name] = key
            certs = {
                name: x509.load_der_x509_certificate((path / f"{name}.der").read_bytes())
                for name in ("root", "pck_ca", "pck", "tcb_signing")
            }
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError("simulated_tdx.dir", f"cannot load dev PKI: {exc}") from None
        sim = cls(
            keys,
            certs["root"],
            certs["pck_ca"],
            certs["pck"],
            certs["tcb_signing"],
            qe_id=bytes.fromhex(meta["qe_id"]),
        )
        if clock is not None:
            sim.clock = clock
        return sim

    @property
    def root_der(self) -> bytes:
        """The dev root CA (DER): add it to `trusted_roots` to accept this deployment."""
        return self.root.public_bytes(serialization.Encoding.DER)

    # --- quotes ------------------------------------------------------------------------------

    def _qe_report(self, ak_pub: bytes, auth: bytes) -> bytes:
        report = bytearray(384)
        report[0:16] = DEV_CPUSVN
        report[48:64] = DEV_QE_ATTRIBUTES
        report[64:96] = DEV_QE_MRENCLAVE
        report[128:160] = DEV_QE_MRSIGNER
        struct.pack_into("<HH", report, 256, 2, DEV_QE_SVN)
        report[320:352] = hashlib.sha256(ak_pub + auth).digest()
        return bytes(report)

    def quote(self, report_data: bytes, *, measurements: Measurements | None = None) -> bytes:
        """A v4 TDX quote carrying `report_data` (64 bytes) and `measurements`."""
        if len(report_data) != 64:
            raise ProviderError("report_data", "must be 64 bytes")
        m = measurements or Measurements(mr_td=DEFAULT_MR_TD)
        header = struct.pack("<HHIHH", 4, 2, TEE_TDX, 0, 0) + INTEL_QE_VENDOR_ID
        header += self.qe_id + bytes(4)
        body = bytearray(584)
        body[0:16] = DEV_TEE_TCB_SVN
        body[16:64] = DEV_MR_SEAM
        body[120:128] = m.td_attributes
        body[128:136] = m.xfam
        body[136:184] = m.mr_td
        body[184:232] = m.mr_config_id
        for i, rtmr in enumerate((m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3)):
            body[328 + 48 * i : 376 + 48 * i] = rtmr
        body[520:584] = report_data
        signed = header + bytes(body)
        ak = self.keys["attestation"]
        ak_pub = ak.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )[1:]
        auth = bytes(range(32))
        qe_report = self._qe_report(ak_pub, auth)
        chain = _pem(self.pck, self.pck_ca, self.root).encode() + b"\x00"
        inner = (
            qe_report
            + _sig64(self.keys["pck"], qe_report)
            + struct.pack("<H", len(auth))
            + auth
            + struct.pack("<HI", 5, len(chain))
            + chain
        )
        sig_data = _sig64(ak, signed) + ak_pub + struct.pack("<HI", 6, len(inner)) + inner
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    # --- collateral --------------------------------------------------------------------------

    def collateral(self, *, now: int | None = None, revoke_pck: bool = False) -> Collateral:
        """Collateral valid from the start of `now`'s day for 30 days (cached per day)."""
        t = int(self.clock() if now is None else now)
        issue = t - t % 86400
        key = (issue, revoke_pck)
        if key not in self._collateral:
            self._collateral[key] = self._make_collateral(issue, revoke_pck)
        return self._collateral[key]

    def _crl(
        self,
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        issue: int,
        revoked: x509.Certificate | None = None,
    ) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(datetime.fromtimestamp(issue, UTC))
            .next_update(datetime.fromtimestamp(issue + COLLATERAL_VALIDITY, UTC))
            .add_extension(x509.CRLNumber(issue), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                critical=False,
            )
        )
        if revoked is not None:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(revoked.serial_number)
                .revocation_date(datetime.fromtimestamp(issue, UTC) - timedelta(days=1))
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _make_collateral(self, issue: int, revoke_pck: bool) -> Collateral:
        next_update = issue + COLLATERAL_VALIDITY
        tcb_date = _iso(issue - 30 * 86400)
        level = {
            "tcb": {
                "sgxtcbcomponents": [{"svn": v} for v in DEV_CPUSVN],
                "pcesvn": DEV_PCESVN,
                "tdxtcbcomponents": [{"svn": v} for v in DEV_TEE_TCB_SVN],
            },
            "tcbDate": tcb_date,
            "tcbStatus": "UpToDate",
        }
        zero_signer = "00" * 48
        tcb_info = {
            "id": "TDX",
            "version": 3,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "fmspc": DEV_FMSPC.hex().upper(),
            "pceId": DEV_PCEID.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 1,
            "tdxModule": {
                "mrsigner": zero_signer,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tdxModuleIdentities": [
                {
                    "id": f"TDX_{DEV_TEE_TCB_SVN[1]:02X}",
                    "mrsigner": zero_signer,
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": [
                        {
                            "tcb": {"isvsvn": DEV_TEE_TCB_SVN[0]},
                            "tcbDate": tcb_date,
                            "tcbStatus": "UpToDate",
                        }
                    ],
                }
            ],
            "tcbLevels": [level],
        }
        qe_identity = {
            "id": "TD_QE",
            "version": 2,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "tcbEvaluationDataNumber": 1,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": DEV_QE_ATTRIBUTES.hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": DEV_QE_MRSIGNER.hex().upper(),
            "isvprodid": 2,
            "tcbLevels": [
                {"tcb": {"isvsvn": DEV_QE_SVN}, "tcbDate": tcb_date, "tcbStatus": "UpToDate"}
            ],
        }
        tcb_text = json.dumps(tcb_info, separators=(",", ":"))
        qe_text = json.dumps(qe_identity, separators=(",", ":"))
        signer = self.keys["tcb_signing"]
        signing_chain = _pem(self.tcb_signing, self.root)
        return Collateral(
            pck_crl_issuer_chain=_pem(self.pck_ca, self.root),
            root_ca_crl=self._crl(self.root, self.keys["root"], issue),
            pck_crl=self._crl(
                self.pck_ca, self.keys["pck_ca"], issue, self.pck if revoke_pck else None
            ),
            tcb_info_issuer_chain=signing_chain,
            tcb_info=tcb_text,
            tcb_info_signature=_sig64(signer, tcb_text.encode()),
            qe_identity_issuer_chain=signing_chain,
            qe_identity=qe_text,
            qe_identity_signature=_sig64(signer, qe_text.encode()),
        )


def _write_new_private(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only (0600) and write `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
