"""Bad input to every in-process parser: envelopes, TDX quotes, handles and plaintexts, and
the orchestrator's decoder of queued TransactionMessages.

Each parser either returns or raises its package's typed error (a `nox.errors.NoxError`, an
`attestation.exceptions.AttestationError`); any other exception is a crash and fails the
test (Hypothesis then prints the minimal input).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import (
    FUZZ_SETTINGS,
    Signers,
    envelopes,
    interesting_bytes,
    mutated,
    proto_messages,
)
from hypothesis import given
from hypothesis import strategies as st

from attestation import parse_quote, verify_quote
from attestation.collateral import Collateral
from attestation.exceptions import AttestationError
from attestation.quote import read_quote_bytes
from attestation.roots import intel_sgx_root_ca
from nox.crypto.eip712 import Domain
from nox.crypto.envelope import sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import NoxError, PermissionDenied
from nox.handles import MAX_TYPE_CODE, Handle, ValueType, decode_plaintext, encode_plaintext
from nox.orchestrator.tasks import TransactionDecoder
from nox.v1 import gateway_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

NOW = 1_800_000_000
CHAIN_ID = 31337
DOMAIN = Domain(chain_id=CHAIN_ID, verifying_contract=bytes.fromhex("11" * 20))
COMPUTE = bytes.fromhex("22" * 20)
RECEIVER = bytes.fromhex("33" * 20)
ROLE_RUNNER, ROLE_INGESTOR = 2, 5


class Directory:
    """address -> role, raising like the registry views (what verify_envelope's caller does)."""

    def __init__(self) -> None:
        self.roles: dict[bytes, int] = {}

    def enrol(self, role: int) -> EnclaveKey:
        key = EnclaveKey.generate()
        self.roles[key.address] = role
        return key

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        if self.roles.get(address) != role:
            raise PermissionDenied("not an active node of this role", reason="ROLE_MISMATCH")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        self.require(address, role, now)


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory()


# --------------------------------------------------------------------------- envelopes


def test_verify_envelope_raises_only_typed_errors(directory: Directory) -> None:
    runner = directory.enrol(ROLE_RUNNER)
    signers = Signers(DOMAIN, RECEIVER, lambda: NOW, runner, (directory.enrol(ROLE_INGESTOR),))
    replay = MemoryReplayCache()
    good = sign_envelope(
        runner, gateway_pb2.GetOperandsPayload(task_id=bytes(32)), domain=DOMAIN,
        audience=RECEIVER, now=NOW,
    )  # fmt: skip
    raw = st.one_of(st.binary(max_size=300), mutated(good.SerializeToString()))
    candidates = st.one_of(
        envelopes(gateway_pb2.GetOperandsPayload, signers),
        proto_messages(SignedEnvelope, depth=0),
        raw.map(_parse_envelope),
    )

    @FUZZ_SETTINGS
    @given(env=candidates)
    def run(env: SignedEnvelope | None) -> None:
        if env is None:  # bytes that are no SignedEnvelope at all
            return
        try:
            verified = verify_envelope(
                env,
                gateway_pb2.GetOperandsPayload,
                domain=DOMAIN,
                audience=RECEIVER,
                now=NOW,
                replay=replay,
                authorize=lambda signer: directory.require(signer, ROLE_RUNNER, NOW),
            )
        except NoxError:
            return
        # accepted: then it really is the runner's, for us, inside its window
        assert verified.signer == runner.address
        assert env.audience == RECEIVER
        assert env.issued_at <= NOW + 30
        assert env.expires_at >= NOW

    run()


def _parse_envelope(data: bytes) -> SignedEnvelope | None:
    from google.protobuf.message import DecodeError

    try:
        return SignedEnvelope.FromString(data)
    except DecodeError:
        return None


# --------------------------------------------------------------------------- quotes


def _quote_case(tdx_fixtures: Path) -> tuple[bytes, Collateral, int]:
    case = json.loads((tdx_fixtures / "index.json").read_text())[0]
    quote = read_quote_bytes((tdx_fixtures / case["quote"]).read_bytes())
    collateral = Collateral.from_json((tdx_fixtures / case["collateral"]).read_text())
    return quote, collateral, int(case["now"])


def test_parse_quote_raises_only_attestation_errors(tdx_fixtures: Path) -> None:
    quote, _, _ = _quote_case(tdx_fixtures)
    parse_quote(quote)  # the seed itself parses

    @FUZZ_SETTINGS
    @given(data=st.one_of(st.binary(max_size=2048), mutated(quote), mutated(quote[:1024])))
    def run(data: bytes) -> None:
        with contextlib.suppress(AttestationError):
            parse_quote(data)

    run()


def test_verify_quote_refuses_every_mutated_quote(tdx_fixtures: Path) -> None:
    """A real quote with its real collateral verifies; a mutated one is refused with an
    AttestationError, or, if accepted, its signed part (header and TD report) is intact."""
    quote, collateral, now = _quote_case(tdx_fixtures)
    roots = [intel_sgx_root_ca()]
    verify_quote(quote, collateral, now=now, trusted_roots=roots)
    original = parse_quote(quote)
    signed = original.raw[: original.signed_length]

    @FUZZ_SETTINGS
    @given(data=mutated(quote))
    def run(data: bytes) -> None:
        try:
            verify_quote(data, collateral, now=now, trusted_roots=roots)
        except AttestationError:
            return
        accepted = parse_quote(data)
        assert accepted.raw[: accepted.signed_length] == signed

    run()


# --------------------------------------------------------------------------- handles


@FUZZ_SETTINGS
@given(data=interesting_bytes(max_size=40))
def test_handle_from_bytes(data: bytes) -> None:
    try:
        handle = Handle.from_bytes(data)
    except NoxError:
        assert len(data) != 32 or data[30] > MAX_TYPE_CODE or data[31] != 0
        return
    assert handle.to_bytes() == data


@FUZZ_SETTINGS
@given(code=st.integers(-2, 300), data=interesting_bytes(max_size=80))
def test_decode_plaintext(code: int, data: bytes) -> None:
    """decode_plaintext raises a typed error or returns a value that encodes back exactly."""
    try:
        vt = ValueType.from_code(code)
    except NoxError:
        assert not 0 <= code <= MAX_TYPE_CODE
        return
    try:
        value = decode_plaintext(vt, data)
    except NoxError:
        return
    assert encode_plaintext(vt, value) == data


# --------------------------------------------------------------------------- queued messages


def _handle(type_code: int) -> bytes:
    return os.urandom(26) + CHAIN_ID.to_bytes(4, "big") + bytes([type_code, 0])


def _transaction() -> task_pb2.TransactionMessage:
    a, b, out = _handle(11), _handle(11), _handle(11)
    return task_pb2.TransactionMessage(
        chain_id=CHAIN_ID,
        block_number=7,
        block_hash=os.urandom(32),
        block_timestamp=NOW - 12,
        transaction_hash=os.urandom(32),
        compute_address=COMPUTE,
        operations=[
            task_pb2.Operation(
                log_index=1, operator=1, caller=bytes(19) + b"\x01",
                input_handles=[a, b], output_handles=[out],
            )
        ],
    )  # fmt: skip


def test_transaction_decoder_raises_only_typed_errors(directory: Directory) -> None:
    """The orchestrator's decode of a queued message (verify the ingestor's envelope, then
    check the TransactionMessage): a TaskSpec or a typed error, for any bytes."""
    ingestor = directory.enrol(ROLE_INGESTOR)
    decoder = TransactionDecoder(
        domain=DOMAIN, compute_address=COMPUTE, directory=directory,  # type: ignore[arg-type]
        clock=lambda: NOW, max_ttl=7 * 24 * 3600,
    )  # fmt: skip
    good = sign_envelope(ingestor, _transaction(), domain=DOMAIN, audience=COMPUTE, now=NOW)
    spec = decoder(good.SerializeToString())
    assert spec.output_handles  # the seed is a valid message
    signers = Signers(DOMAIN, COMPUTE, lambda: NOW, ingestor, (directory.enrol(ROLE_RUNNER),))

    @st.composite
    def signed_messages(draw: st.DrawFn) -> bytes:
        """Ingestor-signed TransactionMessages with random fields (and a valid one mutated)."""
        if draw(st.booleans()):
            msg = _transaction()
            msg.MergeFrom(draw(proto_messages(task_pb2.TransactionMessage, depth=2)))
        else:
            msg = draw(proto_messages(task_pb2.TransactionMessage, depth=2))
        env = sign_envelope(ingestor, msg, domain=DOMAIN, audience=COMPUTE, now=NOW)
        return env.SerializeToString()

    data_strategy = st.one_of(
        st.binary(max_size=400),
        mutated(good.SerializeToString()),
        signed_messages(),
        envelopes(task_pb2.TransactionMessage, signers, depth=2).map(
            lambda e: e.SerializeToString()
        ),
    )

    @FUZZ_SETTINGS
    @given(data=data_strategy)
    def run(data: bytes) -> None:
        try:
            result: Any = decoder(data)
        except NoxError:
            return
        assert result.ingestor == ingestor.address
        assert len(result.task_id) == 32

    run()
