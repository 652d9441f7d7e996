"""RA-TLS: TLS server certificates bound to the registered enclave key (issue 15).

A service makes, at start and in memory only, a fresh P-256 TLS key and a self-signed X.509
certificate (`make_tls_identity`). A private, non-critical extension (`BINDING_OID`) carries

    OCTET STRING { version 0x01 ‖ enclave address (20) ‖ signature (65) ‖ endpoint (UTF-8) }

where `signature` is the enclave key's secp256k1 signature (r ‖ s ‖ v) of the EIP-712 digest
`keccak256(0x1901 ‖ domainSeparator ‖ keccak256(TLS_BINDING_TYPEHASH ‖ spkiHash ‖
keccak256(endpoint)))`, with the deployment's domain {Nox, 1, chainId, NoxRegistry} and
`spkiHash = keccak256(DER SubjectPublicKeyInfo of the certificate)`. The certificate's TLS key
is thus vouched for by the enclave key the registry holds for an attested node; the
certificate cannot be moved to another key, endpoint, chain or registry.

grpc-python runs no custom verification callback, so a client checks before it trusts
(`attested_channel`): it fetches the server's certificate over a plain TLS handshake (no
verification, no request bytes), checks the binding (`verify_certificate`): the signature
recovers to an enclave address that the directory says is active in the expected role (and
equals the expected address when the caller knows it), the endpoint is the one dialled; then
it opens the gRPC channel with exactly that certificate as its only root. A server that does
not hold the certificate's private key cannot complete that channel's handshake.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import grpc.aio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nox.crypto.eip712 import Domain
from nox.crypto.hashing import keccak256
from nox.crypto.keys import EnclaveKey, checksum, recover_address
from nox.errors import NoxError
from nox.rpc.client import (
    ChannelSettings,
    create_channel,
    message_size_options,
    typed_error_interceptors,
)
from nox.rpc.exceptions import InvalidServerSettings, TlsBindingInvalid

__all__ = [
    "BINDING_OID",
    "TLS_BINDING_TYPE",
    "TLS_BINDING_TYPEHASH",
    "AttestedDialer",
    "AttestedPeer",
    "RoleDirectory",
    "TlsIdentity",
    "attested_channel",
    "attested_identity",
    "binding_digest",
    "binding_extension",
    "dial",
    "fetch_certificate",
    "make_tls_identity",
    "server_name",
    "verify_certificate",
]

# A UUID-based OID (ITU-T X.667, arc 2.25): private to nox, needs no registration.
BINDING_OID = x509.ObjectIdentifier("2.25.143121392919887736627725232992592154632")
TLS_BINDING_TYPE = "TlsBinding(bytes32 spkiHash,string endpoint)"
TLS_BINDING_TYPEHASH = keccak256(TLS_BINDING_TYPE.encode())
_VERSION = 1
_HEADER = 1 + 20 + 65  # version, address, signature; the endpoint follows
_MAX_ENDPOINT = 255
# The certificate of a fresh identity is valid from a little before `now` (clock skew) for
# this long; a service restarts (and makes a new identity) well within it.
_VALIDITY = datetime.timedelta(days=30)
_SKEW = datetime.timedelta(minutes=5)
_FETCH_TIMEOUT = 10.0


class RoleDirectory(Protocol):
    """Who is registered: raises PermissionDenied unless `address` is active in `role`."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise unless `address` is registered, attested and unexpired in `role` at `now`."""
        ...


@dataclass(frozen=True)
class TlsIdentity:
    """A server's RA-TLS certificate and key, PEM, in memory only (never written to disk)."""

    certificate: bytes
    private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class AttestedPeer:
    """What `verify_certificate` established about a server."""

    address: bytes
    """The registered enclave address the certificate's key is bound to."""
    endpoint: str
    certificate: bytes
    """The certificate, PEM: the only root the channel to this server trusts."""
    server_name: str
    """The certificate's DNS name (the channel's `ssl_target_name_override`)."""


def _refused(message: str, check: str, **extra: str) -> TlsBindingInvalid:
    """The refusal, with metadata `check` naming the failed check (and any `extra`)."""
    return TlsBindingInvalid(message, metadata={"check": check, **extra})


def binding_digest(domain: Domain, spki_der: bytes, endpoint: str) -> bytes:
    """The 32-byte EIP-712 digest the enclave key signs for a TLS key at `endpoint`."""
    struct_hash = keccak256(
        TLS_BINDING_TYPEHASH, keccak256(spki_der), keccak256(endpoint.encode("utf-8"))
    )
    return keccak256(b"\x19\x01", domain.separator, struct_hash)


def server_name(address: bytes) -> str:
    """The DNS name an enclave's RA-TLS certificate carries (one label per address)."""
    return f"{address.hex()}.enclave.nox"


def _der_octets(body: bytes) -> bytes:
    if len(body) < 0x80:
        return b"\x04" + bytes((len(body),)) + body
    return b"\x04\x81" + bytes((len(body),)) + body  # body is < 256 bytes


def _undo_octets(value: bytes) -> bytes:
    if len(value) >= 2 and value[0] == 0x04 and value[1] < 0x80:
        body = value[2:]
        if len(body) == value[1]:
            return body
    elif len(value) >= 3 and value[:2] == b"\x04\x81" and value[2] >= 0x80:
        body = value[3:]
        if len(body) == value[2]:
            return body
    raise _refused("the binding extension is not one DER octet string", "format")


def binding_extension(address: bytes, signature: bytes, endpoint: str) -> bytes:
    """The binding extension's value (see the module docstring)."""
    return _der_octets(bytes((_VERSION,)) + address + signature + endpoint.encode("utf-8"))


def _decode(value: bytes) -> tuple[bytes, bytes, str]:
    body = _undo_octets(value)
    if len(body) <= _HEADER or body[0] != _VERSION:
        raise _refused("unknown binding extension version or length", "format")
    try:
        endpoint = body[_HEADER:].decode("utf-8")
    except UnicodeDecodeError:
        raise _refused("the bound endpoint is not UTF-8", "format") from None
    return body[1:21], body[21:_HEADER], endpoint


def make_tls_identity(
    key: EnclaveKey, domain: Domain, endpoint: str, *, now: int | None = None
) -> TlsIdentity:
    """A fresh P-256 key and its self-signed certificate bound to `key` for `endpoint`.

    `endpoint` is the `host:port` clients dial (as they write it). `now` (unix seconds)
    starts the validity; the current time by default.
    """
    encoded = endpoint.encode("utf-8")
    if not encoded or len(encoded) > _MAX_ENDPOINT:
        raise InvalidServerSettings("an RA-TLS endpoint is 1 to 255 bytes of UTF-8")
    tls_key = ec.generate_private_key(ec.SECP256R1())
    spki = tls_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = key.sign_digest(binding_digest(domain, spki, endpoint))
    name = server_name(key.address)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = (
        datetime.datetime.now(datetime.UTC)
        if now is None
        else datetime.datetime.fromtimestamp(now, datetime.UTC)
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(tls_key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(start - _SKEW)
        .not_valid_after(start + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(
                BINDING_OID, binding_extension(key.address, signature, endpoint)
            ),
            critical=False,
        )
        .sign(tls_key, hashes.SHA256())
    )
    return TlsIdentity(
        certificate=certificate.public_bytes(serialization.Encoding.PEM),
        private_key=tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def attested_identity(
    key: EnclaveKey, domain: Domain, endpoint: str = ""
) -> Callable[[str], TlsIdentity]:
    """A server's `ServerSettings.tls_identity`: certificates bound to `key` for its
    advertised `endpoint` (what clients dial) when set, else for the host:port it bound."""
    return lambda bound: make_tls_identity(key, domain, endpoint or bound)


def verify_certificate(
    certificate_der: bytes,
    *,
    endpoint: str,
    domain: Domain,
    directory: RoleDirectory,
    role: int,
    now: int,
    expected_address: bytes | None = None,
) -> AttestedPeer:
    """Check that a server certificate is bound to an active enclave of `role`.

    Raises TlsBindingInvalid (metadata `check`: format, signature, endpoint,
    address, directory, validity) unless: the certificate parses and verifies under its own
    key, carries one binding extension whose signature recovers, over this certificate's
    SPKI, the `endpoint` dialled and `domain`, to an address that `directory` says is active
    in `role` at `now` (and equals `expected_address` when given), and is valid at `now`.
    """
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise _refused(
            "the server certificate is not a self-signed X.509 certificate", "format"
        ) from exc
    try:
        value = cert.extensions.get_extension_for_oid(BINDING_OID).value
    except x509.ExtensionNotFound:
        raise _refused("the certificate has no enclave binding", "format") from None
    if not isinstance(value, x509.UnrecognizedExtension):
        raise _refused("the binding extension is malformed", "format")
    address, signature, bound_endpoint = _decode(value.value)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        signer = recover_address(binding_digest(domain, spki, bound_endpoint), signature)
    except NoxError as exc:
        raise _refused("the binding signature is malformed", "signature") from exc
    if signer != address:
        raise _refused("the binding signature is not the named enclave's", "signature")
    if bound_endpoint != endpoint:
        raise _refused(f"the certificate is bound to another endpoint than {endpoint}", "endpoint")
    if expected_address is not None and address != expected_address:
        raise _refused(
            f"the certificate is bound to {checksum(address)}, not the expected enclave",
            "address",
            address=checksum(address),
        )
    try:
        directory.require(address, role, now)
    except NoxError as exc:
        raise _refused(
            f"{checksum(address)} is not an active enclave of role {role}: {exc.reason}",
            "directory",
            address=checksum(address),
            cause=exc.reason,
        ) from exc
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise _refused("the server certificate is not valid now", "validity")
    return AttestedPeer(
        address=address,
        endpoint=endpoint,
        certificate=cert.public_bytes(serialization.Encoding.PEM),
        server_name=server_name(address),
    )


def _split(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise _refused(f"target {target!r} is not host:port", "format")
    return host.removeprefix("[").removesuffix("]"), int(port)


async def fetch_certificate(target: str) -> bytes:
    """The DER certificate the TLS server at `target` presents, from one handshake.

    No verification here (the caller checks the binding), and no application byte is sent:
    the connection is closed right after the handshake (at most `_FETCH_TIMEOUT` seconds).
    The handshake itself still proves that the server holds the private key of the
    certificate it sent (CertificateVerify).
    """
    host, port = _split(target)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        async with asyncio.timeout(_FETCH_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise _refused(
            f"no TLS handshake with {target}: {type(exc).__name__}", "handshake"
        ) from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        # abort, not close: a graceful TLS close waits for the server's close_notify, which
        # a gRPC server that got no HTTP/2 preface never sends (30 s of asyncio's timeout)
        writer.transport.abort()
    if not der:
        raise _refused(f"{target} presented no certificate", "handshake")
    return bytes(der)


async def attested_channel(
    target: str,
    directory: RoleDirectory,
    role: int,
    *,
    domain: Domain,
    now: int,
    expected_address: bytes | None = None,
    settings: ChannelSettings | None = None,
) -> tuple[grpc.aio.Channel, AttestedPeer]:
    """A gRPC channel to `target` pinned to its verified RA-TLS certificate.

    Raises TlsBindingInvalid before any request byte is sent when the server's certificate is
    not bound to an active enclave of `role` (see `verify_certificate`). `settings` gives the
    message limit and typed errors (its `tls_root_certificates` is ignored: the pinned
    certificate is the only root).
    """
    settings = settings if settings is not None else ChannelSettings()
    certificate = await fetch_certificate(target)
    peer = verify_certificate(
        certificate,
        endpoint=target,
        domain=domain,
        directory=directory,
        role=role,
        now=now,
        expected_address=expected_address,
    )
    return _pinned_channel(target, peer, settings), peer


def _pinned_channel(target: str, peer: AttestedPeer, settings: ChannelSettings) -> grpc.aio.Channel:
    """A channel to `target` trusting exactly `peer`'s verified certificate."""
    credentials = grpc.ssl_channel_credentials(root_certificates=peer.certificate)
    options = [
        *message_size_options(settings.max_message_bytes),
        ("grpc.ssl_target_name_override", peer.server_name),
    ]
    interceptors = typed_error_interceptors() if settings.typed_errors else None
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


@dataclass(frozen=True)
class AttestedDialer:
    """What a client checks a server's RA-TLS certificate against (one per service).

    `directory.require` may block (a registry read over JSON-RPC): `dial` runs the check in
    a worker thread.
    """

    directory: RoleDirectory
    domain: Domain
    clock: Callable[[], int]
    """Unix seconds: the moment the certificate and the registration must be valid at."""


async def dial(
    target: str,
    settings: ChannelSettings,
    *,
    attested: AttestedDialer | None,
    role: int,
    expected_address: bytes | None = None,
) -> tuple[grpc.aio.Channel, AttestedPeer | None]:
    """The one way a service opens a channel to a peer service.

    With `attested` (the client's `*_ATTESTED_TLS` setting on): an `attested_channel`
    pinned to `target`'s certificate once it is verified bound to an active enclave of `role`
    (and to `expected_address` when the caller knows it); TlsBindingInvalid before any request
    byte otherwise. Without: `create_channel` (plaintext or the configured CA roots), and no
    peer. A restarted peer has a new enclave key and certificate, so the pinned channel no
    longer completes a handshake: the caller dials again (and the new certificate is
    verified again) rather than reusing the channel.
    """
    if attested is None:
        return create_channel(target, settings), None
    certificate = await fetch_certificate(target)
    peer = await asyncio.to_thread(
        verify_certificate,
        certificate,
        endpoint=target,
        domain=attested.domain,
        directory=attested.directory,
        role=role,
        now=attested.clock(),
        expected_address=expected_address,
    )
    return _pinned_channel(target, peer, settings), peer
