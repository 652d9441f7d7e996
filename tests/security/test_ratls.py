"""RA-TLS attacks: a client dials only a TLS endpoint whose certificate is bound to an active
enclave of the role it expects (nox.rpc.ratls, docs/api.md "RA-TLS certificates").

The honest server is a real grpc.aio server (nox.rpc.create_server) serving a certificate
made from a registered gateway key. The impostors are TLS servers of the attacker's making
that record every byte they receive after the handshake: a refused client must have sent
none. The man in the middle relays the client's certificate check to the real server and
answers the gRPC connection itself.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.kms.server import StaticDirectory
from nox.rpc import RpcServer, ServerSettings, create_server
from nox.rpc.exceptions import TlsBindingInvalid
from nox.rpc.ratls import (
    BINDING_OID,
    TlsIdentity,
    attested_channel,
    binding_digest,
    binding_extension,
    make_tls_identity,
    server_name,
)
from nox.v1 import common_pb2

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
# the real clock: grpc checks the pinned certificate's validity against it
NOW = int(time.time())
GATEWAY, RUNNER = common_pb2.ROLE_GATEWAY, common_pb2.ROLE_RUNNER

pytestmark = pytest.mark.integration


@dataclass
class Registry:
    """The registry's view: the honest gateway, a second gateway and a runner."""

    gateway: EnclaveKey = field(default_factory=EnclaveKey.generate)
    other_gateway: EnclaveKey = field(default_factory=EnclaveKey.generate)
    runner: EnclaveKey = field(default_factory=EnclaveKey.generate)

    def directory(self) -> StaticDirectory:
        return StaticDirectory(
            {
                self.gateway.address: GATEWAY,
                self.other_gateway.address: GATEWAY,
                self.runner.address: RUNNER,
            }
        )


@pytest.fixture
def registry() -> Registry:
    return Registry()


def _rpcs(server: RpcServer) -> float:
    """RPCs the server has handled (its own metrics)."""
    return sum(
        sample.value
        for metric in server.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "nox_rpc_requests_total"
    )


@pytest.fixture
async def honest(registry: Registry) -> AsyncIterator[RpcServer]:
    """A real gRPC server with an RA-TLS certificate bound to the registered gateway key."""
    server = create_server(
        [],
        settings=ServerSettings(
            graceful_shutdown_seconds=0,
            tls_identity=functools.partial(make_tls_identity, registry.gateway, DOMAIN, now=NOW),
        ),
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


async def _check(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return int(response.status)


async def test_client_connects_to_the_attested_server_and_calls(
    honest: RpcServer, registry: Registry
) -> None:
    channel, peer = await attested_channel(
        honest.target,
        registry.directory(),
        GATEWAY,
        domain=DOMAIN,
        now=NOW,
        expected_address=registry.gateway.address,
    )
    async with channel:
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
    assert peer.address == registry.gateway.address
    assert peer.server_name == server_name(registry.gateway.address)
    assert _rpcs(honest) == 1


# --- impostors -------------------------------------------------------------------------


def _certificate(tls_key: ec.EllipticCurvePrivateKey, extension: bytes, name: str) -> bytes:
    """A self-signed certificate on `tls_key` carrying `extension` as the binding."""
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    start = datetime.datetime.fromtimestamp(NOW - 60, datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(BINDING_OID, extension), critical=False)
        .sign(tls_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def _pem_key(tls_key: ec.EllipticCurvePrivateKey) -> bytes:
    return tls_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(tls_key: ec.EllipticCurvePrivateKey) -> bytes:
    return tls_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _forged(signer: EnclaveKey, named: bytes, endpoint: str, *, flip: bool = False) -> TlsIdentity:
    """A certificate naming enclave `named`, its TLS key's binding signed by `signer`
    (with one signature byte flipped when `flip`)."""
    tls_key = ec.generate_private_key(ec.SECP256R1())
    signature = signer.sign_digest(binding_digest(DOMAIN, _spki(tls_key), endpoint))
    if flip:
        signature = signature[:10] + bytes((signature[10] ^ 1,)) + signature[11:]
    extension = binding_extension(named, signature, endpoint)
    return TlsIdentity(_certificate(tls_key, extension, server_name(named)), _pem_key(tls_key))


@dataclass
class Impostor:
    """A TLS server that records the bytes clients send after their handshake."""

    target: str
    received: list[bytes]
    handshakes: list[int]
    done: asyncio.Event


class StartImpostor(Protocol):
    """Start an impostor serving `make(target)`, on `port` when given (a free one else)."""

    def __call__(
        self, make: Callable[[str], TlsIdentity], port: int | None = None
    ) -> Awaitable[Impostor]: ...


@pytest.fixture
async def impostor(tmp_path: Path) -> AsyncIterator[StartImpostor]:
    servers: list[asyncio.Server] = []

    async def start(make: Callable[[str], TlsIdentity], port: int | None = None) -> Impostor:
        if port is None:
            sock_probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            port = sock_probe.sockets[0].getsockname()[1]
            sock_probe.close()
            await sock_probe.wait_closed()
        target = f"127.0.0.1:{port}"
        identity = make(target)
        (tmp_path / "cert.pem").write_bytes(identity.certificate)  # the attacker's own key
        (tmp_path / "key.pem").write_bytes(identity.private_key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        context.set_alpn_protocols(["h2"])
        seen = Impostor(target, [], [], asyncio.Event())

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.handshakes.append(1)
            try:
                while chunk := await reader.read(65536):
                    seen.received.append(chunk)
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()
                seen.done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=context)
        servers.append(server)
        return seen

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _refused(
    seen: Impostor, registry: Registry, *, expected: bytes | None = None
) -> TlsBindingInvalid:
    with pytest.raises(TlsBindingInvalid) as caught:
        await attested_channel(
            seen.target,
            registry.directory(),
            GATEWAY,
            domain=DOMAIN,
            now=NOW,
            expected_address=expected,
        )
    await asyncio.wait_for(seen.done.wait(), 10)
    assert seen.handshakes == [1]  # the client did reach the impostor ...
    assert seen.received == []  # ... and sent it no request byte
    error = caught.value
    assert error.reason == "TLS_BINDING_INVALID"
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    return error


async def test_an_unregistered_key_is_refused(registry: Registry, impostor: StartImpostor) -> None:
    stranger = EnclaveKey.generate()
    seen = await impostor(functools.partial(make_tls_identity, stranger, DOMAIN, now=NOW))
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "directory"
    assert error.metadata["cause"] == "SIGNER_NOT_REGISTERED"


async def test_a_key_of_another_role_is_refused(
    registry: Registry, impostor: StartImpostor
) -> None:
    seen = await impostor(functools.partial(make_tls_identity, registry.runner, DOMAIN, now=NOW))
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "directory"
    assert error.metadata["cause"] == "ROLE_MISMATCH"


async def test_another_registered_enclave_is_refused_when_the_address_is_expected(
    registry: Registry,
    impostor: StartImpostor,
) -> None:
    other = registry.other_gateway
    seen = await impostor(functools.partial(make_tls_identity, other, DOMAIN, now=NOW))
    error = await _refused(seen, registry, expected=registry.gateway.address)
    assert error.metadata["check"] == "address"


async def test_a_binding_naming_the_registered_enclave_signed_by_another_key_is_refused(
    registry: Registry,
    impostor: StartImpostor,
) -> None:
    attacker = EnclaveKey.generate()
    seen = await impostor(lambda target: _forged(attacker, registry.gateway.address, target))
    error = await _refused(seen, registry, expected=registry.gateway.address)
    assert error.metadata["check"] == "signature"


async def test_an_altered_binding_signature_is_refused(
    registry: Registry, impostor: StartImpostor
) -> None:
    gateway = registry.gateway
    seen = await impostor(lambda target: _forged(gateway, gateway.address, target, flip=True))
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "signature"


async def test_a_binding_copied_onto_the_attackers_tls_key_is_refused(
    registry: Registry,
    honest: RpcServer,
    impostor: StartImpostor,
) -> None:
    """The real certificate's extension (public) pasted into a certificate on the
    attacker's key: the signature covers the real SPKI, not this one."""
    real = x509.load_pem_x509_certificate(
        make_tls_identity(registry.gateway, DOMAIN, honest.target, now=NOW).certificate
    )
    value = real.extensions.get_extension_for_oid(BINDING_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)

    def copy(target: str) -> TlsIdentity:
        tls_key = ec.generate_private_key(ec.SECP256R1())
        name = server_name(registry.gateway.address)
        return TlsIdentity(_certificate(tls_key, value.value, name), _pem_key(tls_key))

    seen = await impostor(copy)
    error = await _refused(seen, registry, expected=registry.gateway.address)
    assert error.metadata["check"] == "signature"


async def test_a_certificate_bound_to_another_endpoint_is_refused(
    registry: Registry,
    impostor: StartImpostor,
) -> None:
    """The gateway's genuine binding for another address, replayed at this endpoint by a
    server that holds its TLS key (a leaked or relocated identity)."""
    seen = await impostor(
        lambda target: make_tls_identity(registry.gateway, DOMAIN, "10.0.0.9:50051", now=NOW)
    )
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "endpoint"


async def test_a_binding_from_another_deployment_is_refused(
    registry: Registry, impostor: StartImpostor
) -> None:
    """Signed under another registry's domain: the signature recovers another address."""
    elsewhere = Domain(DOMAIN.chain_id, bytes(20))
    gateway = registry.gateway
    seen = await impostor(functools.partial(make_tls_identity, gateway, elsewhere, now=NOW))
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "signature"


async def test_a_plain_certificate_is_refused(registry: Registry, impostor: StartImpostor) -> None:
    def plain(target: str) -> TlsIdentity:
        tls_key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "gateway")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(tls_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.fromtimestamp(NOW - 60, datetime.UTC))
            .not_valid_after(datetime.datetime.fromtimestamp(NOW + 3600, datetime.UTC))
            .sign(tls_key, hashes.SHA256())
        )
        return TlsIdentity(cert.public_bytes(serialization.Encoding.PEM), _pem_key(tls_key))

    seen = await impostor(plain)
    error = await _refused(seen, registry)
    assert error.metadata["check"] == "format"


# --- the man in the middle ---------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _free_port() -> int:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(probe.sockets[0].getsockname()[1])
    probe.close()
    await probe.wait_closed()
    return port


async def test_a_man_in_the_middle_with_the_copied_certificate_fails_the_handshake(
    registry: Registry,
) -> None:
    """The attacker sits at the endpoint the client dials. It relays the client's
    certificate check to the real server (so the check passes), then answers the gRPC
    connection with its own server. It has the real certificate (public) but not its private
    key, so it presents that certificate's subject and binding on its own key: the pinned
    channel's handshake fails and no RPC reaches either server."""
    port = await _free_port()
    endpoint = f"127.0.0.1:{port}"
    real = make_tls_identity(registry.gateway, DOMAIN, endpoint, now=NOW)
    honest = create_server(
        [], settings=ServerSettings(graceful_shutdown_seconds=0, tls_identity=lambda _: real)
    )
    binding = (
        x509.load_pem_x509_certificate(real.certificate)
        .extensions.get_extension_for_oid(BINDING_OID)
        .value
    )
    assert isinstance(binding, x509.UnrecognizedExtension)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    stolen = TlsIdentity(
        _certificate(tls_key, binding.value, server_name(registry.gateway.address)),
        _pem_key(tls_key),
    )
    mitm = create_server(
        [], settings=ServerSettings(graceful_shutdown_seconds=0, tls_identity=lambda _: stolen)
    )
    await honest.start()
    await mitm.start()
    connections: list[str] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = honest.target if not connections else mitm.target
        connections.append(upstream)
        host, up_port = upstream.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(up_port))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    proxy = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        channel, peer = await attested_channel(
            endpoint,
            registry.directory(),
            GATEWAY,
            domain=DOMAIN,
            now=NOW,
            expected_address=registry.gateway.address,
        )
        assert peer.address == registry.gateway.address  # the check saw the real server
        async with channel:
            with pytest.raises(NoxError) as caught:
                await _check(channel)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert connections[0] == honest.target
        assert connections[1:]
        assert set(connections[1:]) == {mitm.target}
        assert _rpcs(mitm) == 0
        assert _rpcs(honest) == 0
    finally:
        proxy.close()
        await proxy.wait_closed()
        await mitm.stop(0)
        await honest.stop(0)


def test_the_real_certificate_cannot_be_served_without_its_key(
    registry: Registry, tmp_path: Path
) -> None:
    """The other way to present the copied certificate, on the attacker's key: the TLS
    stacks refuse to serve it (the handshake's CertificateVerify would not verify)."""
    real = make_tls_identity(registry.gateway, DOMAIN, "127.0.0.1:50051", now=NOW)
    other = make_tls_identity(EnclaveKey.generate(), DOMAIN, "127.0.0.1:50051", now=NOW)
    (tmp_path / "cert.pem").write_bytes(real.certificate)
    (tmp_path / "key.pem").write_bytes(other.private_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ssl.SSLError):
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
