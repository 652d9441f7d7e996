"""Envelope helpers for integrators building signed calls by hand (DESIGN §4, docs/api.md).

`sign_request` signs a payload for a server, `request_json` prints it the way grpcurl's
`-d` takes a signed request (`{"envelope": {...}}`, proto3 JSON: lowerCamelCase names,
bytes base64, 64-bit integers as strings), and `open_envelope` decodes and checks one. The
signing and checking themselves are `nox.crypto.envelope`'s; nothing here re-implements them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import Verified, sign_envelope, verify_envelope
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache
from nox.errors import InvalidArgument
from nox.v1 import (
    common_pb2,
    decryption_pb2,
    envelope_pb2,
    gateway_pb2,
    kms_pb2,
    orchestrator_pb2,
    runner_pb2,
    task_pb2,
)
from nox.v1.envelope_pb2 import SignedEnvelope

__all__ = [
    "envelope_from_json",
    "envelope_to_json",
    "open_envelope",
    "payload_class",
    "payload_from_json",
    "payload_to_json",
    "request_json",
    "sign_request",
]

_MODULES = (
    common_pb2,
    decryption_pb2,
    envelope_pb2,
    gateway_pb2,
    kms_pb2,
    orchestrator_pb2,
    runner_pb2,
    task_pb2,
)
PACKAGE = "nox.v1"


def _message_classes() -> dict[str, type[Message]]:
    classes: dict[str, type[Message]] = {}
    for module in _MODULES:
        for name in module.DESCRIPTOR.message_types_by_name:
            cls = getattr(module, name)
            classes[cls.DESCRIPTOR.full_name] = cls
    return classes


def payload_class(type_name: str) -> type[Message]:
    """The generated class of a `nox.v1` message by full name (`nox.v1.HeartbeatPayload`).

    Raises InvalidArgument for a name outside `nox.v1` or one that does not exist.
    """
    cls = _message_classes().get(type_name)
    if cls is None:
        raise InvalidArgument(
            f"unknown payload type {type_name!r}: expected a nox.v1 message, "
            "e.g. nox.v1.HeartbeatPayload"
        )
    return cls


def payload_from_json(type_name: str, text: str) -> Message:
    """Parse proto3 JSON (as grpcurl prints it) into the `type_name` message; strict."""
    cls = payload_class(type_name)
    try:
        return json_format.Parse(text, cls())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"payload JSON does not parse as {type_name}: {exc}") from None


def payload_to_json(message: Message) -> dict[str, Any]:
    """The proto3 JSON form of `message` as a dict (bytes base64, int64 as strings)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=False)


def sign_request(
    key: EnclaveKey,
    payload: Message,
    *,
    domain: Domain,
    audience: bytes,
    ttl: int = 60,
    now: int | None = None,
    clock: Callable[[], float] = time.time,
) -> SignedEnvelope:
    """Sign `payload` for the server whose enclave address is `audience`, valid `ttl` s."""
    issued = int(clock()) if now is None else now
    return sign_envelope(key, payload, domain=domain, audience=audience, now=issued, ttl=ttl)


def envelope_to_json(envelope: SignedEnvelope) -> dict[str, Any]:
    """The proto3 JSON form of an envelope (what grpcurl shows and takes)."""
    return payload_to_json(envelope)


def request_json(envelope: SignedEnvelope) -> str:
    """The whole signed request for grpcurl's `-d`: `{"envelope": {...}}`, indented."""
    return json.dumps({"envelope": envelope_to_json(envelope)}, indent=2)


def envelope_from_json(text: str) -> SignedEnvelope:
    """An envelope from proto3 JSON: a request `{"envelope": {...}}` or a bare envelope."""
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidArgument("envelope is not JSON") from None
    if isinstance(document, dict) and set(document) == {"envelope"}:
        document = document["envelope"]
    if not isinstance(document, dict):
        raise InvalidArgument("envelope JSON must be an object")
    try:
        return json_format.ParseDict(document, SignedEnvelope())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"envelope JSON does not parse: {exc}") from None


def open_envelope(
    envelope: SignedEnvelope,
    *,
    domain: Domain,
    now: int,
    audience: bytes | None = None,
    expected_signer: bytes | None = None,
    max_skew: int = 30,
    max_ttl: int = 3600,
) -> Verified[Message]:
    """Verify `envelope` (signature, window, audience) and parse its payload by its type.

    `audience` defaults to the envelope's own (then only the signature and window say
    anything); pass your own address to check it is addressed to you. A fresh replay cache
    is used: this is a one-shot inspection, not a server's replay protection. Raises the
    typed errors of `nox.crypto.envelope.verify_envelope`, or InvalidArgument for a payload
    type that is not a `nox.v1` message.
    """
    cls = payload_class(envelope.payload_type)
    return verify_envelope(
        envelope,
        cls,
        domain=domain,
        audience=bytes(envelope.audience) if audience is None else audience,
        now=now,
        replay=MemoryReplayCache(max_entries=1),
        max_skew=max_skew,
        max_ttl=max_ttl,
        expected_signer=expected_signer,
    )
