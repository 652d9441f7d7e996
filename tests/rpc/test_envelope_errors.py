"""A servicer verifying signed envelopes: each bad envelope's status code and reason on the wire.

The servicer (SignedEcho) calls `nox.crypto.envelope.verify_envelope` with a pinned clock,
an in-memory replay cache and the expected signer, and lets the error interceptor report
whatever it raises. Expected codes and reasons are the contract of DESIGN §9 and the
interface sheet; the client side must rebuild the very class `verify_envelope` raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest

from nox.crypto import exceptions as crypto_errors
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import DOMAIN, NoxError
from nox.rpc import (
    ChannelSettings,
    ServerSettings,
    ServiceSpec,
    create_channel,
    create_server,
    error_info,
    raise_typed,
)
from nox.v1.envelope_pb2 import SignedEnvelope

from .echo_service import ECHO_SERVICE, Echo, EchoServicer

pytestmark = pytest.mark.integration

NOW = 1_800_000_000
DOMAIN_712 = Domain(chain_id=31337, verifying_contract=b"\x11" * 20)
SERVER_ADDRESS = b"\x22" * 20
OTHER_ADDRESS = b"\x33" * 20
MAX_SIZE = 4096


@dataclass
class SignedServer:
    stub: Any
    key: EnclaveKey
    echo: Echo

    def sign(self, payload: bytes = b"hello", **overrides: Any) -> SignedEnvelope:
        kwargs: dict[str, Any] = {
            "domain": DOMAIN_712,
            "audience": SERVER_ADDRESS,
            "now": NOW,
            "ttl": 60,
        }
        kwargs.update(overrides)
        return sign_envelope(self.key, self.echo.request(payload), **kwargs)


@pytest.fixture
async def signed(echo: Echo) -> AsyncIterator[SignedServer]:
    key = EnclaveKey.generate()
    replay = MemoryReplayCache()

    def verify(envelope: SignedEnvelope) -> Any:
        return verify_envelope(
            envelope,
            echo.pb2.EchoRequest,
            domain=DOMAIN_712,
            audience=SERVER_ADDRESS,
            now=NOW,
            replay=replay,
            max_size=MAX_SIZE,
            expected_signer=key.address,
        )

    spec = ServiceSpec(
        ECHO_SERVICE, echo.grpc.add_EchoServiceServicer_to_server, EchoServicer(echo, verify)
    )
    server = create_server([spec], settings=ServerSettings(graceful_shutdown_seconds=0))
    await server.start()
    channel = create_channel(server.target, ChannelSettings(typed_errors=False))
    try:
        yield SignedServer(echo.stub(channel), key, echo)
    finally:
        await channel.close()
        await server.stop(grace=0)


def tampered(s: SignedServer) -> SignedEnvelope:
    env = s.sign(b"pay 10")
    env.payload = s.echo.request(b"pay 99").SerializeToString()
    return env


def wrong_payload_type(s: SignedServer) -> SignedEnvelope:
    env = s.sign()
    env.payload_type = "noxtest.v1.EchoResponse"
    return env


def short_signature(s: SignedServer) -> SignedEnvelope:
    env = s.sign()
    env.signature = env.signature[:64]
    return env


def bad_recovery_id(s: SignedServer) -> SignedEnvelope:
    env = s.sign()
    env.signature = env.signature[:64] + b"\x05"
    return env


def short_nonce(s: SignedServer) -> SignedEnvelope:
    env = s.sign()
    env.nonce = env.nonce[:31]
    return env


def other_signer(s: SignedServer) -> SignedEnvelope:
    return sign_envelope(
        EnclaveKey.generate(),
        s.echo.request(b"hello"),
        domain=DOMAIN_712,
        audience=SERVER_ADDRESS,
        now=NOW,
    )


# (case, build the bad envelope, expected class, expected code, expected reason)
CASES: list[tuple[str, Callable[[SignedServer], SignedEnvelope], type[NoxError], str, str]] = [
    ("tampered payload", tampered, crypto_errors.UnexpectedSigner,
     "UNAUTHENTICATED", "UNEXPECTED_SIGNER"),
    ("signed by another key", other_signer, crypto_errors.UnexpectedSigner,
     "UNAUTHENTICATED", "UNEXPECTED_SIGNER"),
    ("expired", lambda s: s.sign(now=NOW - 120, ttl=60), crypto_errors.EnvelopeExpired,
     "UNAUTHENTICATED", "ENVELOPE_EXPIRED"),
    ("future-dated", lambda s: s.sign(now=NOW + 600), crypto_errors.EnvelopeNotYetValid,
     "UNAUTHENTICATED", "ENVELOPE_NOT_YET_VALID"),
    ("wrong audience", lambda s: s.sign(audience=OTHER_ADDRESS), crypto_errors.WrongAudience,
     "PERMISSION_DENIED", "WRONG_AUDIENCE"),
    ("payload type mismatch", wrong_payload_type, crypto_errors.PayloadTypeMismatch,
     "INVALID_ARGUMENT", "PAYLOAD_TYPE_MISMATCH"),
    ("signature of wrong length", short_signature, crypto_errors.SignatureMalformed,
     "UNAUTHENTICATED", "SIGNATURE_MALFORMED"),
    ("invalid recovery id", bad_recovery_id, crypto_errors.SignatureMalformed,
     "UNAUTHENTICATED", "SIGNATURE_MALFORMED"),
    ("nonce of wrong length", short_nonce, crypto_errors.EnvelopeMalformed,
     "INVALID_ARGUMENT", "ENVELOPE_MALFORMED"),
    ("oversized envelope", lambda s: s.sign(b"\0" * MAX_SIZE), crypto_errors.EnvelopeTooLarge,
     "RESOURCE_EXHAUSTED", "ENVELOPE_TOO_LARGE"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "cls", "code", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_envelope_gets_its_code_and_reason(
    signed: SignedServer,
    build: Callable[[SignedServer], SignedEnvelope],
    cls: type[NoxError],
    code: str,
    reason: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await signed.stub.SignedEcho(build(signed))
    err = caught.value
    assert err.code() == grpc.StatusCode[code]
    info = error_info(err)
    assert info is not None
    assert (info.reason, info.domain) == (reason, DOMAIN)
    with pytest.raises(cls) as typed:
        raise_typed(err)
    assert type(typed.value) is cls
    # The server is unharmed: a good envelope still verifies.
    response = await signed.stub.SignedEcho(signed.sign(b"good"))
    assert response.payload == b"good"


async def test_replayed_envelope_is_refused_once_accepted(signed: SignedServer) -> None:
    env = signed.sign(b"once")
    assert (await signed.stub.SignedEcho(env)).payload == b"once"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await signed.stub.SignedEcho(env)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(caught.value)
    assert info is not None
    assert (info.reason, info.domain) == ("NONCE_REPLAYED", DOMAIN)
    with pytest.raises(crypto_errors.ReplayedNonce):
        raise_typed(caught.value)
