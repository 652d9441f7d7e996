"""sign_envelope / verify_envelope: the happy path and every bad envelope with its typed error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.wrappers_pb2 import BytesValue, StringValue

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import (
    DEFAULT_MAX_ENVELOPE_SIZE,
    Verified,
    envelope_signing_digest,
    sign_envelope,
    sign_envelope_with_hash,
    verify_envelope,
)
from nox.crypto.exceptions import (
    BadSignature,
    EnvelopeExpired,
    EnvelopeMalformed,
    EnvelopeNotYetValid,
    EnvelopeTooLarge,
    EnvelopeWindowInvalid,
    PayloadTypeMismatch,
    ReplayedNonce,
    SignatureMalformed,
    UnexpectedSigner,
    WrongAudience,
)
from nox.crypto.hashing import keccak256
from nox.crypto.keys import SECP256K1_ORDER, EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import NoxError, PermissionDenied
from nox.v1.envelope_pb2 import SignedEnvelope

NOW = 1_760_000_000
PAYLOAD = BytesValue(value=b"operands please")


def sign(key: EnclaveKey, domain: Domain, audience: bytes, **kw: Any) -> SignedEnvelope:
    return sign_envelope(key, PAYLOAD, domain=domain, audience=audience, now=NOW, **kw)


def resign(env: SignedEnvelope, key: EnclaveKey, domain: Domain) -> SignedEnvelope:
    """Sign whatever fields `env` now holds, so only the check under test can fail."""
    env.signature = key.sign_digest(envelope_signing_digest(env, domain))
    return env


def check(
    env: SignedEnvelope,
    domain: Domain,
    audience: bytes,
    *,
    now: int = NOW,
    replay: MemoryReplayCache | None = None,
    message_type: type[BytesValue] | type[StringValue] = BytesValue,
    **kw: Any,
) -> Verified[Any]:
    return verify_envelope(
        env,
        message_type,
        domain=domain,
        audience=audience,
        now=now,
        replay=replay if replay is not None else MemoryReplayCache(),
        **kw,
    )


def assert_error(
    err: pytest.ExceptionInfo[NoxError], cls: type[NoxError], reason: str, code: grpc.StatusCode
) -> None:
    assert type(err.value) is cls
    assert err.value.reason == reason
    assert err.value.code == code


def test_round_trip(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience, ttl=60)
    assert env.payload_type == "google.protobuf.BytesValue"
    assert (env.issued_at, env.expires_at) == (NOW, NOW + 60)
    assert len(env.nonce) == 32
    assert len(env.signature) == 65
    assert env.signature[64] in (27, 28)
    replay = MemoryReplayCache()
    verified = verify_envelope(
        env, BytesValue, domain=domain, audience=audience, now=NOW, replay=replay
    )
    assert verified.signer == signer_key.address
    assert verified.message == PAYLOAD
    assert verified.envelope is env
    assert len(replay) == 1


def test_payload_hash_handed_back(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    """Signer and verifier both return keccak256 of the payload bytes (the request hash an
    answer binds to), so neither side hashes the payload again."""
    nonce = bytes(range(32))
    env, payload_hash = sign_envelope_with_hash(
        signer_key, PAYLOAD, domain=domain, audience=audience, now=NOW, nonce=nonce
    )
    assert payload_hash == keccak256(env.payload) == keccak256(PAYLOAD.SerializeToString())
    assert env == sign(signer_key, domain, audience, nonce=nonce)
    verified = check(env, domain, audience)
    assert verified.payload_hash == payload_hash


def test_wire_round_trip(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    wire = sign(signer_key, domain, audience).SerializeToString()
    verified = check(SignedEnvelope.FromString(wire), domain, audience)
    assert verified.signer == signer_key.address


def test_tampered_payload_with_expected_signer(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    env = sign(signer_key, domain, audience)
    env.payload = BytesValue(value=b"operands pleasE").SerializeToString()
    with pytest.raises(UnexpectedSigner) as err:
        check(env, domain, audience, expected_signer=signer_key.address)
    assert_error(err, UnexpectedSigner, "UNEXPECTED_SIGNER", grpc.StatusCode.UNAUTHENTICATED)


def test_tampered_payload_with_registry_check(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    """ecrecover of a tampered envelope yields another address; the registry refuses it
    before the nonce is recorded or the payload parsed."""
    registered = {signer_key.address}

    def authorize(signer: bytes) -> None:
        if signer not in registered:
            raise PermissionDenied("signer is not a registered node", reason="NOT_REGISTERED")

    env = sign(signer_key, domain, audience)
    env.payload = env.payload + b"\x12\x00"  # an extra (unknown) field
    replay = MemoryReplayCache()
    with pytest.raises(PermissionDenied) as err:
        check(env, domain, audience, replay=replay, authorize=authorize)
    assert err.value.reason == "NOT_REGISTERED"
    assert len(replay) == 0
    # Without a signer check the tamper shows only as a different signer.
    verified = check(env, domain, audience)
    assert verified.signer != signer_key.address


@pytest.mark.parametrize("field", ["nonce", "issued_at", "expires_at"])
def test_tampered_header(
    signer_key: EnclaveKey, domain: Domain, audience: bytes, field: str
) -> None:
    env = sign(signer_key, domain, audience)
    if field == "nonce":
        env.nonce = bytes(32)
    else:
        setattr(env, field, getattr(env, field) + 1)
    with pytest.raises(UnexpectedSigner):
        check(env, domain, audience, expected_signer=signer_key.address)


def test_other_domain_is_another_signer(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    env = sign(signer_key, domain, audience)
    other = Domain(chain_id=domain.chain_id + 1, verifying_contract=domain.verifying_contract)
    with pytest.raises(UnexpectedSigner):
        check(env, other, audience, expected_signer=signer_key.address)


def test_wrong_audience(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, b"\xb2" * 20)
    with pytest.raises(WrongAudience) as err:
        check(env, domain, audience)
    assert_error(err, WrongAudience, "WRONG_AUDIENCE", grpc.StatusCode.PERMISSION_DENIED)


def test_expired(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience, ttl=60)
    check(env, domain, audience, now=NOW + 60)  # the last second is still valid
    with pytest.raises(EnvelopeExpired) as err:
        check(env, domain, audience, now=NOW + 61)
    assert_error(err, EnvelopeExpired, "ENVELOPE_EXPIRED", grpc.StatusCode.UNAUTHENTICATED)


def test_future_dated(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience)
    check(env, domain, audience, now=NOW - 30, max_skew=30)  # within the skew
    with pytest.raises(EnvelopeNotYetValid) as err:
        check(env, domain, audience, now=NOW - 31, max_skew=30)
    assert_error(
        err, EnvelopeNotYetValid, "ENVELOPE_NOT_YET_VALID", grpc.StatusCode.UNAUTHENTICATED
    )


def test_validity_window_too_long(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    check(sign(signer_key, domain, audience, ttl=3600), domain, audience, max_ttl=3600)
    env = sign(signer_key, domain, audience, ttl=3601)
    with pytest.raises(EnvelopeWindowInvalid) as err:
        check(env, domain, audience, max_ttl=3600)
    assert_error(
        err, EnvelopeWindowInvalid, "ENVELOPE_WINDOW_INVALID", grpc.StatusCode.INVALID_ARGUMENT
    )


def test_expiry_before_issue(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience)
    env.expires_at = env.issued_at - 1
    with pytest.raises(EnvelopeWindowInvalid):
        check(resign(env, signer_key, domain), domain, audience)


def test_replayed_nonce(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    replay = MemoryReplayCache()
    env = sign(signer_key, domain, audience)
    check(env, domain, audience, replay=replay)
    with pytest.raises(ReplayedNonce) as err:
        check(env, domain, audience, replay=replay)
    assert_error(err, ReplayedNonce, "NONCE_REPLAYED", grpc.StatusCode.UNAUTHENTICATED)
    # Same nonce, another payload from the same signer: still a replay.
    again = sign(signer_key, domain, audience, nonce=env.nonce, ttl=10)
    with pytest.raises(ReplayedNonce):
        check(again, domain, audience, replay=replay)
    # Same nonce from another signer is that signer's own first use.
    other = EnclaveKey.from_bytes(b"\x44" * 32)
    check(sign(other, domain, audience, nonce=env.nonce), domain, audience, replay=replay)


@pytest.mark.parametrize("length", [0, 64, 66, 130])
def test_signature_wrong_length(
    signer_key: EnclaveKey, domain: Domain, audience: bytes, length: int
) -> None:
    env = sign(signer_key, domain, audience)
    env.signature = (env.signature * 2)[:length]
    with pytest.raises(SignatureMalformed) as err:
        check(env, domain, audience)
    assert_error(err, SignatureMalformed, "SIGNATURE_MALFORMED", grpc.StatusCode.UNAUTHENTICATED)


@pytest.mark.parametrize("v", [0, 1, 29, 37, 255])
def test_signature_invalid_recovery_id(
    signer_key: EnclaveKey, domain: Domain, audience: bytes, v: int
) -> None:
    env = sign(signer_key, domain, audience)
    env.signature = env.signature[:64] + bytes((v,))
    with pytest.raises(SignatureMalformed, match="recovery id") as err:
        check(env, domain, audience)
    assert_error(err, SignatureMalformed, "SIGNATURE_MALFORMED", grpc.StatusCode.UNAUTHENTICATED)


def test_signature_high_s(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience)
    s = int.from_bytes(env.signature[32:64], "big")
    twin = env.signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")
    env.signature = twin + bytes((55 - env.signature[64],))
    with pytest.raises(SignatureMalformed, match="EIP-2"):
        check(env, domain, audience)


def test_signature_does_not_recover(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    env = sign(signer_key, domain, audience)
    env.signature = bytes(32) + env.signature[32:]  # r = 0
    with pytest.raises(BadSignature) as err:
        check(env, domain, audience)
    assert_error(err, BadSignature, "BAD_SIGNATURE", grpc.StatusCode.UNAUTHENTICATED)


def test_payload_type_mismatch(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    env = sign(signer_key, domain, audience)
    with pytest.raises(PayloadTypeMismatch) as err:
        check(env, domain, audience, message_type=StringValue)
    assert_error(
        err, PayloadTypeMismatch, "PAYLOAD_TYPE_MISMATCH", grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.value.metadata == {"expected": "google.protobuf.StringValue"}


def test_oversized_default_limit(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    big = BytesValue(value=bytes(DEFAULT_MAX_ENVELOPE_SIZE))
    env = sign_envelope(signer_key, big, domain=domain, audience=audience, now=NOW)
    with pytest.raises(EnvelopeTooLarge) as err:
        check(env, domain, audience)
    assert_error(err, EnvelopeTooLarge, "ENVELOPE_TOO_LARGE", grpc.StatusCode.RESOURCE_EXHAUSTED)


def test_oversized_configured_limit(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    env = sign(signer_key, domain, audience)
    check(env, domain, audience, max_size=env.ByteSize())
    with pytest.raises(EnvelopeTooLarge):
        check(env, domain, audience, max_size=env.ByteSize() - 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("audience", b"\xa1" * 19), ("audience", b""), ("nonce", bytes(31)), ("nonce", bytes(33))],
)
def test_malformed_header_field(
    signer_key: EnclaveKey, domain: Domain, audience: bytes, field: str, value: bytes
) -> None:
    env = sign(signer_key, domain, audience)
    setattr(env, field, value)
    with pytest.raises(EnvelopeMalformed) as err:
        check(env, domain, audience)
    assert_error(err, EnvelopeMalformed, "ENVELOPE_MALFORMED", grpc.StatusCode.INVALID_ARGUMENT)
    assert err.value.metadata == {"field": field}


def test_verify_before_parse(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    """Undecodable payload bytes: a bad signature is reported first; a good signature gets
    the nonce recorded and only then the parse error."""
    env = sign(signer_key, domain, audience)
    env.payload = b"\xff\xff\xff"  # not a protobuf message
    env.signature = bytes(32) + env.signature[32:]
    with pytest.raises(BadSignature):
        check(env, domain, audience)
    resign(env, signer_key, domain)
    replay = MemoryReplayCache()
    with pytest.raises(EnvelopeMalformed, match="does not parse") as err:
        check(env, domain, audience, replay=replay, expected_signer=signer_key.address)
    assert err.value.metadata == {"field": "payload"}
    assert len(replay) == 1


def test_payload_bytes_never_reserialized(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    """A non-canonical encoding (field repeated, unknown field) verifies as signed."""
    raw = b"\x0a\x01A" + b"\x0a\x01B" + b"\x98\x01\x07"  # value twice, then unknown field 19
    env = SignedEnvelope(
        payload=raw,
        payload_type="google.protobuf.BytesValue",
        audience=audience,
        issued_at=NOW,
        expires_at=NOW + 5,
        nonce=b"\x01" * 32,
    )
    resign(env, signer_key, domain)
    verified = check(env, domain, audience, expected_signer=signer_key.address)
    assert verified.message.value == b"B"
    assert verified.message.SerializeToString() != raw
    assert verified.envelope.payload == raw


def test_authorize_runs_before_nonce_is_recorded(
    signer_key: EnclaveKey, domain: Domain, audience: bytes
) -> None:
    replay = MemoryReplayCache()
    env = sign(signer_key, domain, audience)
    seen: list[bytes] = []

    def refuse(signer: bytes) -> None:
        seen.append(signer)
        raise PermissionDenied("not yet registered")

    with pytest.raises(PermissionDenied):
        check(env, domain, audience, replay=replay, authorize=refuse)
    assert seen == [signer_key.address]
    assert len(replay) == 0
    check(env, domain, audience, replay=replay, authorize=lambda signer: None)  # now accepted


def test_sign_rejects_bad_arguments(signer_key: EnclaveKey, domain: Domain) -> None:
    cases: list[Callable[[], object]] = [
        lambda: sign_envelope(signer_key, PAYLOAD, domain=domain, audience=bytes(19), now=NOW),
        lambda: sign_envelope(
            signer_key, PAYLOAD, domain=domain, audience=bytes(20), now=NOW, nonce=bytes(31)
        ),
        lambda: sign_envelope(
            signer_key, PAYLOAD, domain=domain, audience=bytes(20), now=2**64 - 1, ttl=1
        ),
        lambda: sign_envelope(
            signer_key, PAYLOAD, domain=domain, audience=bytes(20), now=NOW, ttl=-1
        ),
    ]
    for case in cases:
        with pytest.raises(NoxError) as err:
            case()
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_fresh_nonce_each_time(signer_key: EnclaveKey, domain: Domain, audience: bytes) -> None:
    nonces = {sign(signer_key, domain, audience).nonce for _ in range(20)}
    assert len(nonces) == 20
