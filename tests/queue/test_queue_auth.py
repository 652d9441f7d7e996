"""NATS credentials and permissions (nox/queue/auth.py): what the services and the local
server do with them. The attacks themselves are in tests/security/test_queue.py."""

from __future__ import annotations

import dataclasses
import datetime
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nox.queue import (
    InvalidQueueSettings,
    MessageIdMismatch,
    NatsServerProcess,
    QueueSettings,
    check_msg_id,
    connect,
    payload_msg_id,
    transaction_msg_id,
)
from nox.queue.auth import role_permissions
from nox.queue.connection import auth_options

pytestmark = [pytest.mark.timeout(60)]


async def test_connect_refuses_to_go_without_a_credential() -> None:
    with pytest.raises(InvalidQueueSettings, match="credentials are required"):
        await connect(QueueSettings(servers=("nats://127.0.0.1:1",)))


def test_no_auth_is_an_explicit_dangerous_setting() -> None:
    options = auth_options(QueueSettings(dangerous_no_auth=True))
    assert "user" not in options
    assert "password" not in options


@pytest.mark.parametrize(
    "change",
    [
        {"user": "u"},  # no password
        {"password": "p"},  # no user
        {"user": "u", "password": "p", "creds_file": "x.creds"},  # two credentials
        {"tls_cert_chain": "c.pem"},  # a certificate without its key
        {"inbox_prefix": "_INBOX.>"},
    ],
)
def test_unworkable_credentials_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidQueueSettings):
        dataclasses.replace(QueueSettings(), **change)  # type: ignore[arg-type]


def test_password_is_not_in_the_settings_repr() -> None:
    s = QueueSettings(user="nox-ingestor", password="hunter2-secret")
    assert "hunter2-secret" not in repr(s)


def _ca(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats test ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_settings_give_a_verifying_context(tmp_path: Path) -> None:
    options = auth_options(
        QueueSettings(user="u", password="p", tls_root_certificates=str(_ca(tmp_path)))
    )
    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_each_role_gets_only_its_subjects() -> None:
    q = QueueSettings()
    ingestor = role_permissions("ingestor", q)
    orchestrator = role_permissions("orchestrator", q)
    assert "nox.tx.*" in ingestor["publish"]["allow"]
    assert "nox.tx.*" not in orchestrator["publish"]["allow"]
    assert "nox.dlq.*" in orchestrator["publish"]["allow"]
    assert "nox.dlq.*" not in ingestor["publish"]["allow"]
    for perms in (ingestor, orchestrator):
        allowed = " ".join(perms["publish"]["allow"])
        assert "DELETE" not in allowed
        assert "PURGE" not in allowed
        assert ">" not in perms["publish"]["allow"]
    assert not any("MSG.NEXT" in s for s in ingestor["publish"]["allow"])
    assert ingestor["subscribe"]["allow"] == ["_INBOX_ingestor.>"]
    with pytest.raises(ValueError, match="unknown NATS role"):
        role_permissions("runner", q)


@pytest.mark.integration
def test_server_state_is_private(tmp_path: Path) -> None:
    with NatsServerProcess(tmp_path / "nats") as server:
        user = server.user("ingestor")
        assert stat.S_IMODE(server.config_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(user.password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(user.password_file.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.state_dir.stat().st_mode) == 0o700
        password = user.password()
        assert len(password) == 64
        # the same credential after a restart (services keep their password files)
        server.restart()
        assert server.user("ingestor").password() == password
        assert server.settings("ingestor").password == password


def test_a_message_is_accepted_only_under_its_own_ids() -> None:
    tx, other = b"\x01" * 32, b"\x02" * 32
    data = b"signed envelope bytes"
    check_msg_id(transaction_msg_id(5, tx), 5, tx, data)  # the transaction's id
    check_msg_id(payload_msg_id(data), 5, tx, data)  # the payload id
    for wrong in (transaction_msg_id(5, other), transaction_msg_id(6, tx), "", "0x00"):
        with pytest.raises(MessageIdMismatch):
            check_msg_id(wrong, 5, tx, data)
