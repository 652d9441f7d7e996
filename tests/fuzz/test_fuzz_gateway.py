"""Bad input to every GatewayService and KmsService method over real gRPC.

For each method and each strategy: every answer is OK or a documented code with exactly one
ErrorInfo(nox.v1, a known ErrorReason); a refused request leaves the store as it was (row
counts and a hash of every row), a read-only method never changes it; and afterwards the
server still answers a good call of the same method.
"""

from __future__ import annotations

import grpc
import pytest
from fuzz_net import GW, KMS, FuzzNet
from fuzz_support import (
    DOCUMENTED_CODES,
    FUZZ_SETTINGS,
    EnvelopeHook,
    envelopes,
    interesting_bytes,
    proto_messages,
    requests,
)
from gateway_support import DOMAIN
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from nox.crypto.envelope import sign_envelope
from nox.errors import NoxError
from nox.kms.authorization import authorization_digest
from nox.v1 import decryption_pb2, gateway_pb2, kms_pb2, orchestrator_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

pytestmark = pytest.mark.integration

# method -> (request class, payload class of a signed request, may write on success)
METHODS: dict[str, tuple[type[Message], type[Message] | None, bool]] = {
    GW + "GetGatewayInfo": (gateway_pb2.GetGatewayInfoRequest, None, False),
    GW + "EncryptInput": (gateway_pb2.EncryptInputRequest, None, True),
    GW + "GetOperands": (gateway_pb2.GetOperandsRequest, gateway_pb2.GetOperandsPayload, False),
    GW + "StoreResults": (gateway_pb2.StoreResultsRequest, gateway_pb2.StoreResultsPayload, True),
    GW + "Decrypt": (gateway_pb2.DecryptRequest, None, False),
    GW + "PublicDecrypt": (gateway_pb2.PublicDecryptRequest, None, False),
    GW + "GetHandleStatus": (gateway_pb2.GetHandleStatusRequest, None, False),
    KMS + "GetPublicKey": (kms_pb2.GetPublicKeyRequest, None, False),
    KMS + "Delegate": (kms_pb2.DelegateRequest, kms_pb2.DelegatePayload, False),
}
MALFORMED = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
SIGNED = [m for m, (_, payload, _) in METHODS.items() if payload is not None]


def check(
    net: FuzzNet,
    method: str,
    request: bytes,
    allowed: frozenset[grpc.StatusCode] = DOCUMENTED_CODES,
) -> None:
    """One call: documented answer (checked by Outcomes) and the store rule."""
    before = net.snapshot()
    err = net.call(method, request, allowed)
    writes = METHODS[method][2]
    if err is not None or not writes:
        assert net.snapshot() == before, f"{method} changed the store on refused input"


def nested_envelopes(net: FuzzNet) -> EnvelopeHook:
    """Envelopes inside payloads: assignments, runner results, KMS answers, anything."""
    actors = net.gw.actors
    assignment = net.signers(actors.orchestrator, actors.runner.address)
    result = net.signers(actors.runner, actors.orchestrator.address)
    kms_answer = net.signers(net.kms.keys[0], net.gw.key.address)
    return lambda: st.one_of(
        envelopes(task_pb2.TaskAssignment, assignment, depth=2),
        envelopes(orchestrator_pb2.SubmitResultPayload, result, depth=2),
        envelopes(kms_pb2.DelegateResponsePayload, kms_answer, depth=1),
        proto_messages(SignedEnvelope, depth=0),  # type: ignore[arg-type]
    )


def outer_signers(net: FuzzNet, method: str):  # type: ignore[no-untyped-def]
    actors = net.gw.actors
    if method == GW + "GetOperands":
        return net.signers(actors.runner, net.gw.key.address)
    if method == GW + "StoreResults":
        return net.signers(actors.orchestrator, net.gw.key.address)
    return net.signers(net.gw.key, net.kms.keys[0].address)  # KMS Delegate


@st.composite
def signed_authorizations(draw: st.DrawFn, net: FuzzNet) -> decryption_pb2.DecryptionAuthorization:
    """Random authorization fields, signed by the viewer when the fields can be hashed."""
    auth = draw(proto_messages(decryption_pb2.DecryptionAuthorization))
    if draw(st.booleans()):
        auth.user_address = net.user.address
        auth.chain_id = DOMAIN.chain_id
    try:
        auth.signature = sign_digest(net, authorization_digest(DOMAIN, auth))  # type: ignore[arg-type]
    except NoxError:
        auth.signature = draw(interesting_bytes())
    return auth  # type: ignore[return-value]


def sign_digest(net: FuzzNet, digest: bytes) -> bytes:
    return net.user.sign_digest(digest)


@st.composite
def seeded_signed(draw: st.DrawFn, net: FuzzNet, method: str, seed: bytes) -> bytes:
    """A valid signed request whose payload has some fields replaced by random ones, signed
    again correctly by its expected signer: the draws that reach the deepest checks."""
    request_cls, payload_cls, _ = METHODS[method]
    assert payload_cls is not None
    payload = payload_cls.FromString(request_cls.FromString(seed).envelope.payload)  # type: ignore[attr-defined]
    override = draw(proto_messages(payload_cls, envelope=nested_envelopes(net), depth=2))
    for fd, value in override.ListFields():
        if draw(st.booleans()):  # replace the field
            payload.ClearField(fd.name)
        if fd.is_repeated:
            getattr(payload, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(payload, fd.name).MergeFrom(value)
        else:
            setattr(payload, fd.name, value)
    signers = outer_signers(net, method)
    env = sign_envelope(
        signers.expected, payload, domain=DOMAIN, audience=signers.audience, now=net.clock.now
    )
    return request_cls(envelope=env).SerializeToString()  # type: ignore[call-arg]


def structured(net: FuzzNet, method: str) -> st.SearchStrategy[bytes]:
    """Structurally valid requests with random field values (strategy b, c)."""
    request_cls, payload_cls, _ = METHODS[method]
    nested = nested_envelopes(net)
    if payload_cls is not None:
        env = envelopes(payload_cls, outer_signers(net, method), nested=nested)
        return st.one_of(
            env.map(lambda e: request_cls(envelope=e).SerializeToString()),
            seeded_signed(net, method, net.good(method)),
        )
    if method == GW + "Decrypt":
        handles = st.lists(
            st.one_of(st.just(net.stored), st.just(net.public), interesting_bytes()), max_size=4
        )
        signed = st.builds(
            lambda a, h: gateway_pb2.DecryptRequest(authorization=a, handles=h),
            signed_authorizations(net),
            handles,
        )
        generic = proto_messages(request_cls)
        return st.one_of(signed, generic).map(lambda m: m.SerializeToString())
    generic = proto_messages(request_cls, envelope=nested)
    if method in (GW + "GetHandleStatus", GW + "PublicDecrypt"):
        # batches around and over the limit (GetGatewayInfoResponse.max_batch_handles)
        handle = st.one_of(st.just(net.stored), st.binary(min_size=32, max_size=32))
        limit = net.gw.ctx.limits.max_batch_handles
        batch = st.lists(handle, min_size=limit - 1, max_size=limit + 2)
        generic = st.one_of(generic, batch.map(lambda h: request_cls(handles=h)))  # type: ignore[call-arg]
    return generic.map(lambda m: m.SerializeToString())


@pytest.mark.parametrize("size", [2 * 2**20, 9 * 2**20, 17 * 2**20])
@pytest.mark.parametrize("method", [GW + "EncryptInput", GW + "StoreResults", KMS + "Delegate"])
def test_oversized_requests(net: FuzzNet, method: str, size: int) -> None:
    """Over the public request limit (1 MiB), the envelope limit (8 MiB) and the gRPC message
    limit (16 MiB): refused with a documented code, nothing stored, server still serving."""
    request_cls, payload_cls, _ = METHODS[method]
    if payload_cls is None:
        request = gateway_pb2.EncryptInputRequest.FromString(net.good(method))
        request.plaintext = bytes(size)
    else:
        request = request_cls.FromString(net.good(method))
        request.envelope.payload += b"\x0a" + bytes(size)  # type: ignore[attr-defined]
    before = net.snapshot()
    err = net.call(method, request.SerializeToString())
    assert err is not None, f"{method} accepted a {size}-byte request"
    assert net.snapshot() == before
    net.assert_serves(method)


def test_store_snapshot_sees_a_write(net: FuzzNet) -> None:
    """The store check is not vacuous: one accepted EncryptInput changes the snapshot."""
    before = net.snapshot()
    net.encrypt(99)
    assert net.snapshot() != before


@pytest.mark.parametrize("method", list(METHODS))
def test_raw_and_mutated_requests(net: FuzzNet, method: str) -> None:
    """(a) arbitrary bytes as the request, and a valid request's bytes mutated (those that
    still parse as the request type: the servicer sees them)."""
    seed = net.good(method)

    @FUZZ_SETTINGS
    @given(request=requests(seed, METHODS[method][0], decodable=True))
    def run(request: bytes) -> None:
        check(net, method, request)

    run()
    net.assert_serves(method)


@pytest.mark.parametrize("method", list(METHODS))
def test_undecodable_requests(net: FuzzNet, method: str) -> None:
    """Bytes that do not parse as the request type are malformed input: INVALID_ARGUMENT
    with an ErrorInfo (docs/api.md), like any other bad input, never UNKNOWN."""
    seed = net.good(method)

    @FUZZ_SETTINGS
    @given(request=requests(seed, METHODS[method][0], decodable=False))
    def run(request: bytes) -> None:
        check(net, method, request, MALFORMED)

    run()
    net.assert_serves(method)


@pytest.mark.parametrize("method", list(METHODS))
def test_structured_requests(net: FuzzNet, method: str) -> None:
    """(b) every field random; (c) for signed methods, envelopes with every field varied."""

    @FUZZ_SETTINGS
    @given(request=structured(net, method))
    def run(request: bytes) -> None:
        check(net, method, request)

    run()
    net.assert_serves(method)


def test_every_code_seen_is_documented(net: FuzzNet) -> None:
    """The campaign's summary: the codes and reasons seen per method. It drives a structured
    campaign of its own first, so it asserts the same thing alone or after the tests above
    (whose outcomes it then also covers)."""

    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(sorted(METHODS)))
        check(net, method, data.draw(structured(net, method)))

    run()
    for method in METHODS:  # a method the draw missed still gets its well-formed call
        check(net, method, net.good(method))
    seen = net.outcomes.seen
    assert {m for m, _, _ in seen} == set(METHODS), "every method answered at least once"
    for method, code, reason in sorted(seen):
        print(f"{method} {code} {reason}")  # the table `pytest -s` shows
        assert code == "OK" or grpc.StatusCode[code] in DOCUMENTED_CODES, (method, code, reason)
    # each signed method was driven past the envelope checks at least once
    for method in SIGNED:
        reasons = {r for m, _, r in seen if m == method}
        deep = reasons - {
            "ENVELOPE_MALFORMED", "SIGNATURE_MALFORMED", "PAYLOAD_TYPE_MISMATCH",
            "WRONG_AUDIENCE", "ENVELOPE_WINDOW_INVALID", "ENVELOPE_NOT_YET_VALID",
            "ENVELOPE_EXPIRED", "BAD_SIGNATURE", "SIGNER_NOT_REGISTERED", "ROLE_MISMATCH",
            "INVALID_ARGUMENT",
        }  # fmt: skip
        assert deep, f"{method}: no request got past the envelope checks ({sorted(reasons)})"
