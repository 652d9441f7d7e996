"""TLS on two services at once: the gateway and the KMS nodes serve TLS with a certificate of
a development CA made here; the gateway dials the KMS nodes and the SDK dials the gateway
trusting that CA (the settings every service has: docs/operations.md §4). A client that
does not trust the CA, or that speaks plaintext, gets nothing."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sdk_support import CHAIN, running_network

from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.gateway.config import GatewaySettings
from nox.gateway.server import connect_kms
from nox.handles import uint
from nox.rpc import ChannelSettings, create_channel
from nox.sdk import ClientSettings, NoxClient
from nox.v1 import kms_pb2, kms_pb2_grpc

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def dev_ca(folder: Path, label: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for 127.0.0.1/localhost: (ca, chain, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"nox dev CA {label}"))
        .issuer_name(_name(f"nox dev CA {label}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / f"{label}-ca.pem", folder / f"{label}-chain.pem", folder / f"{label}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_gateway_and_kms_over_tls_and_a_client_without_the_ca_refused(
    tmp_path: Path,
) -> None:
    ca, chain, key = dev_ca(tmp_path, "nox")
    other_ca, _, _ = dev_ca(tmp_path, "other")
    user, app = EnclaveKey.generate(), os.urandom(20)
    async with running_network(tmp_path, tls=(ca, chain, key)) as net:
        trusting = ClientSettings(channel=ChannelSettings(tls_root_certificates=ca))
        async with NoxClient(
            net.gateway_target,
            directory=net.registry,
            kms_public=net.dealing.public,
            settings=trusting,
        ) as nox:
            encrypted = await nox.encrypt_input(77, uint(64), owner=user.address, application=app)
            net.acl.viewers.add((encrypted.handle, user.address))
            # Decrypt: SDK → gateway (TLS) → KMS nodes (TLS, the gateway trusting the CA).
            assert await nox.decrypt([encrypted.handle], user_key=user) == {encrypted.handle: 77}

        for refused in (
            ClientSettings(),  # plaintext gRPC to a TLS server
            ClientSettings(channel=ChannelSettings(tls_root_certificates=other_ca)),
        ):
            async with NoxClient(
                net.gateway_target, directory=net.registry, settings=refused
            ) as stranger:
                with pytest.raises(NoxError) as failed:
                    await stranger.info()
                assert failed.value.code == grpc.StatusCode.UNAVAILABLE

        # The production gateway's way to the KMS nodes (NOX_GATEWAY_KMS_TLS_ROOT_CERTIFICATES).
        public = net.dealing.public
        connect = {
            "key": EnclaveKey.generate(),
            "domain": Domain(chain_id=CHAIN, verifying_contract=net.registry_address),
            "directory": net.registry,
            "registry_keys": (public.public_key, public.public_shares, public.threshold),
            "now": 0,
        }
        fanout = await connect_kms(
            tuple(net.kms_targets),
            settings=GatewaySettings(kms_tls_root_certificates=ca),
            **connect,  # type: ignore[arg-type]
        )
        assert fanout.public.public_key == public.public_key
        with pytest.raises(NoxError) as failed:
            await connect_kms(tuple(net.kms_targets), settings=GatewaySettings(), **connect)  # type: ignore[arg-type]
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE

        # The KMS nodes too: without the CA, not even their public key.
        channel = create_channel(
            net.kms_targets[0], ChannelSettings(tls_root_certificates=other_ca)
        )
        try:
            with pytest.raises(NoxError) as failed:
                await kms_pb2_grpc.KmsServiceStub(channel).GetPublicKey(
                    kms_pb2.GetPublicKeyRequest(), timeout=10
                )
            assert failed.value.code == grpc.StatusCode.UNAVAILABLE
        finally:
            await channel.close(None)
