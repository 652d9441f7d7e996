"""Structured logs never print secrets: secret-looking keys, raw bytes, traceback locals."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from nox.rpc.logging import (
    REDACTED,
    SecretRedactor,
    bind_logger,
    build_processors,
    configure_logging,
    get_logger,
    looks_secret,
)

SECRET_HEX = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"
RAW = bytes.fromhex(SECRET_HEX)  # 32 bytes


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "client_secret",
        "private_key",
        "privateKey",
        "key_share",
        "share",
        "public_shares",  # over-redacting a public value is the safe mistake
        "plaintext",
        "plaintexts",
        "password",
        "seed",
        "sk",
        "enclave_sk",
        "SK",
        "mnemonic",
    ],
)
def test_secret_looking_keys(key: str) -> None:
    assert looks_secret(key)


@pytest.mark.parametrize(
    "key", ["task", "task_id", "disk", "risk", "handle", "public_key", "method", "code"]
)
def test_ordinary_keys(key: str) -> None:
    assert not looks_secret(key)


@pytest.mark.parametrize("json_output", [True, False])
def test_logged_event_does_not_print_secrets_or_raw_bytes(json_output: bool) -> None:
    out = io.StringIO()
    redactor = SecretRedactor(fingerprint_key=b"k" * 16)
    log = bind_logger(build_processors(json=json_output, redactor=redactor), out)
    log.info(
        "delegation",
        key_share=SECRET_HEX,
        plaintext=12345,
        ciphertext=RAW,
        nested={"private_key": SECRET_HEX, "blobs": [RAW, bytearray(RAW)]},
        short=RAW[:4],
        task_id="t-1",
    )
    text = out.getvalue()
    assert SECRET_HEX not in text
    assert SECRET_HEX[:16] not in text
    assert "12345" not in text
    assert RAW.hex()[:8] not in text  # not even the 4 short bytes
    assert repr(RAW)[:12] not in text
    fingerprint = redactor.fingerprint(RAW)
    assert fingerprint.startswith("<32 bytes #")
    assert fingerprint in text
    assert "t-1" in text
    if json_output:
        event = json.loads(text)
        assert event["key_share"] == REDACTED
        assert event["plaintext"] == REDACTED
        assert event["ciphertext"] == fingerprint
        assert event["nested"] == {"private_key": REDACTED, "blobs": [fingerprint, fingerprint]}
        assert event["short"] == redactor.fingerprint(RAW[:4])
        assert event["event"] == "delegation"
        assert event["level"] == "info"


def test_fingerprint_is_keyed_per_redactor() -> None:
    # Low-entropy plaintexts cannot be confirmed by hashing guesses in another process.
    one, two = SecretRedactor(), SecretRedactor()
    value = (7).to_bytes(32, "big")
    assert one.fingerprint(value) == one.fingerprint(value)
    assert one.fingerprint(value) != two.fingerprint(value)


def test_clear_bytes_max_shows_short_values() -> None:
    redactor = SecretRedactor(clear_bytes_max=16)
    event = redactor(None, "info", {"event": "x", "nonce": b"\x01\x02", "data": RAW})
    assert event["nonce"] == "0102"
    assert event["data"].startswith("<32 bytes #")


@pytest.mark.parametrize("json_output", [True, False])
def test_tracebacks_do_not_show_locals(json_output: bool) -> None:
    out = io.StringIO()
    log = bind_logger(build_processors(json=json_output), out)

    def fails(secret_value: str) -> None:
        raise ValueError("boom")

    try:
        fails(SECRET_HEX)
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert "boom" in text
    assert "ValueError" in text
    assert SECRET_HEX not in text


def test_configure_logging_writes_redacted_json() -> None:
    out = io.StringIO()
    try:
        configure_logging(json=True, level="info", stream=out)
        structlog.get_logger("test").info("hello", password="hunter2", sk=RAW)
        structlog.get_logger("test").debug("filtered out")
    finally:
        structlog.reset_defaults()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["password"] == REDACTED
    assert event["sk"] == REDACTED
    assert "hunter2" not in lines[0]


def test_unconfigured_get_logger_still_redacts(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.reset_defaults()
    assert not structlog.is_configured()
    get_logger("nox.test").info("event", private_key=SECRET_HEX, blob=RAW)
    err = capsys.readouterr().err
    assert "event" in err
    assert SECRET_HEX not in err
    assert RAW.hex()[:16] not in err
