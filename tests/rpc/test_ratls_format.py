"""The RA-TLS certificate format (docs/api.md "RA-TLS certificates") and its server setting:
what `make_tls_identity` writes, `verify_certificate` reads back, and malformed extensions
are refused as `format`, never read loosely."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey, recover_address
from nox.kms.server import StaticDirectory
from nox.rpc import ServerSettings
from nox.rpc.exceptions import InvalidServerSettings, TlsBindingInvalid
from nox.rpc.ratls import (
    BINDING_OID,
    binding_digest,
    binding_extension,
    make_tls_identity,
    server_name,
    verify_certificate,
)

DOMAIN = Domain(31337, b"\x22" * 20)
NOW = 1_800_000_000
ROLE = 4
ENDPOINT = "kms-1.example:50052"


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_the_certificate_carries_the_documented_binding() -> None:
    key = EnclaveKey.generate()
    identity = make_tls_identity(key, DOMAIN, ENDPOINT, now=NOW)
    cert = x509.load_pem_x509_certificate(identity.certificate)
    extension = cert.extensions.get_extension_for_oid(BINDING_OID)
    assert not extension.critical
    value = extension.value
    assert isinstance(value, x509.UnrecognizedExtension)
    body = value.value[2:]  # DER OCTET STRING header: 0x04, length
    assert value.value[:2] == bytes((0x04, len(body)))
    assert body[0] == 1
    assert body[1:21] == key.address
    assert body[86:].decode() == ENDPOINT
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert recover_address(binding_digest(DOMAIN, spki, ENDPOINT), body[21:86]) == key.address
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [server_name(key.address)]
    assert b"PRIVATE KEY" in identity.private_key
    assert "PRIVATE" not in repr(identity)
    peer = verify_certificate(
        _der(identity.certificate),
        endpoint=ENDPOINT,
        domain=DOMAIN,
        directory=StaticDirectory({key.address: ROLE}),
        role=ROLE,
        now=NOW,
    )
    assert peer.address == key.address


def _with_extension(value: bytes) -> bytes:
    tls_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    start = datetime.datetime.fromtimestamp(NOW - 60, datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(tls_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(BINDING_OID, value), critical=False)
        .sign(tls_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


GOOD = binding_extension(b"\x01" * 20, b"\x02" * 65, ENDPOINT)


BODY = b"\x01" + b"\x01" * 20 + b"\x02" * 65


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (GOOD[:-1], "not one DER octet string"),  # shorter than its DER length
        (GOOD + b"\x00", "not one DER octet string"),  # trailing bytes
        (b"\x05" + GOOD[1:], "not one DER octet string"),  # not an OCTET STRING
        (GOOD[:2] + b"\x02" + GOOD[3:], "version"),  # another version
        (bytes((0x04, len(BODY))) + BODY, "version or length"),  # no endpoint
        (bytes((0x04, len(BODY) + 2)) + BODY + b"\xff\xfe", "not UTF-8"),
    ],
    ids=["truncated", "trailing", "not-octets", "version", "no-endpoint", "not-utf8"],
)
def test_malformed_extensions_are_refused(value: bytes, message: str) -> None:
    with pytest.raises(TlsBindingInvalid) as caught:
        verify_certificate(
            _with_extension(value),
            endpoint=ENDPOINT,
            domain=DOMAIN,
            directory=StaticDirectory({}),
            role=ROLE,
            now=NOW,
        )
    assert caught.value.metadata["check"] == "format"
    assert message in caught.value.message


def test_an_expired_certificate_is_refused() -> None:
    key = EnclaveKey.generate()
    identity = make_tls_identity(key, DOMAIN, ENDPOINT, now=NOW)
    with pytest.raises(TlsBindingInvalid) as caught:
        verify_certificate(
            _der(identity.certificate),
            endpoint=ENDPOINT,
            domain=DOMAIN,
            directory=StaticDirectory({key.address: ROLE}),
            role=ROLE,
            now=NOW + 31 * 86400,
        )
    assert caught.value.metadata["check"] == "validity"


def test_ra_tls_and_tls_files_are_exclusive() -> None:
    key = EnclaveKey.generate()
    with pytest.raises(InvalidServerSettings):
        ServerSettings(
            tls_cert_chain=Path("chain.pem"),
            tls_private_key=Path("key.pem"),
            tls_identity=lambda endpoint: make_tls_identity(key, DOMAIN, endpoint),
        )
    with pytest.raises(InvalidServerSettings):
        make_tls_identity(key, DOMAIN, "")
