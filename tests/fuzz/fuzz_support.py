"""Support of the bad-input campaign: strategies, the raw gRPC caller, the outcome checks.

Strategies (all plain Hypothesis, no hypothesis-protobuf):

- `proto_messages(cls)` builds structurally valid messages of any nox.v1 type from its
  descriptor, with field values drawn from the lengths and numbers the API cares about
  (20, 32, 33, 65 bytes; 0, 2**32, 2**64 - 1, ...) and plain random ones.
- `mutated(seed)` mutates a valid request's serialized bytes: bit flips, truncation,
  deletion, insertion, duplication of a slice (which duplicates fields), byte overwrite.
- `envelopes(...)` builds `SignedEnvelope`s: real EIP-712 signatures by registered or
  unregistered keys over random payloads, wrong payload types, audiences, windows, nonces.

The outcome checks hold every answer to docs/api.md: a documented status code for the
method, exactly one `ErrorInfo` with domain `nox.v1` and a reason of `ErrorReason`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import sqlalchemy as sa
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from nox.crypto.eip712 import Domain
from nox.crypto.envelope import envelope_signing_digest
from nox.crypto.keys import EnclaveKey
from nox.v1 import error_pb2, gateway_pb2, kms_pb2, orchestrator_pb2, task_pb2
from nox.v1.envelope_pb2 import SignedEnvelope

T = TypeVar("T")

#: Examples per strategy and method; NOX_FUZZ_EXAMPLES=5000 makes a long run.
EXAMPLES = int(os.environ.get("NOX_FUZZ_EXAMPLES", "40"))

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
    print_blob=True,
)

#: Every code docs/api.md allows a service to answer bad input with (never INTERNAL/UNKNOWN).
DOCUMENTED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)

#: The reasons on the wire: ErrorReason names without their prefix (docs/api.md "Errors").
REASONS = frozenset(
    name.removeprefix("ERROR_REASON_")
    for name in error_pb2.ErrorReason.keys()  # noqa: SIM118 - enum wrapper, not a dict
    if name != "ERROR_REASON_UNSPECIFIED"
)

RPC_TIMEOUT = 30.0


# --------------------------------------------------------------------------- event loop


class LoopThread:
    """An asyncio loop in a thread: the grpc.aio servers live there for a whole module, so
    the Hypothesis tests stay synchronous and call them with a blocking channel."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcomes:
    """Every (method, code, reason) seen, and the checks applied to each answer."""

    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def call(
        self,
        channel: grpc.Channel,
        method: str,
        request: bytes,
        *,
        allowed: frozenset[grpc.StatusCode] = DOCUMENTED_CODES,
    ) -> grpc.RpcError | None:
        """Send `request` as the raw bytes of `method`; check an error answer; return it."""
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            self.seen.add((method, *check_error(method, err, allowed)))
            return err
        self.seen.add((method, "OK", ""))
        return None

    def codes(self, method: str) -> set[str]:
        return {code for m, code, _ in self.seen if m == method}


def check_error(
    method: str, err: grpc.RpcError, allowed: frozenset[grpc.StatusCode]
) -> tuple[str, str]:
    """Assert the error is documented: allowed code, one ErrorInfo(nox.v1, known reason)."""
    code = err.code()  # type: ignore[attr-defined]
    details = err.details()  # type: ignore[attr-defined]
    assert code in allowed, f"{method}: {code.name} ({details!r}) is not a documented code"
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None and code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC itself refuses a message over the size limit, with no ErrorInfo (api.md).
        return code.name, "<grpc message size>"
    assert status is not None, f"{method}: {code.name} ({details!r}) without google.rpc.Status"
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    assert len(infos) == 1, f"{method}: {len(infos)} ErrorInfo details ({details!r})"
    (info,) = infos
    assert info.domain == "nox.v1", f"{method}: ErrorInfo domain {info.domain!r}"
    assert info.reason in REASONS, f"{method}: reason {info.reason!r} is not in ErrorReason"
    return code.name, info.reason


# --------------------------------------------------------------------------- stored state


class StoreSnapshot:
    """Row count and SHA-256 of every row of every table (sorted), except `exclude`.

    The replay table is left out on purpose: recording the nonce of a correctly signed,
    registered request is the envelope check's job even when the payload is then refused.
    """

    def __init__(self, url: str, *, exclude: Iterable[str] = ("nox_seen_nonces",)) -> None:
        self._engine = sa.create_engine(url)
        meta = sa.MetaData()
        meta.reflect(self._engine)
        skip = set(exclude)
        self._tables = [t for name, t in sorted(meta.tables.items()) if name not in skip]
        assert self._tables, "the store has no tables to watch"

    def __call__(self) -> dict[str, tuple[int, str]]:
        out: dict[str, tuple[int, str]] = {}
        with self._engine.connect() as conn:
            for table in self._tables:
                rows = sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
                digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
                out[table.name] = (len(rows), digest)
        return out

    def close(self) -> None:
        self._engine.dispose()


# --------------------------------------------------------------------------- strategies

_LENGTHS = (0, 1, 12, 19, 20, 21, 31, 32, 33, 34, 64, 65, 66, 137)
_U32 = (0, 1, 2, 27, 28, 31337, 2**31 - 1, 2**32 - 1)
_U64 = (*_U32, 2**32, 1_800_000_000, 2**63 - 1, 2**64 - 1)
_I32 = (0, 1, -1, -(2**31), 2**31 - 1)
_I64 = (0, 1, -1, -(2**63), 2**63 - 1)


def interesting_bytes(max_size: int = 96) -> st.SearchStrategy[bytes]:
    """Bytes of the lengths the API checks, of random lengths, and a few special values."""
    return st.one_of(
        st.sampled_from(_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.binary(max_size=max_size),
        st.sampled_from(
            [b"\x00" * 32, b"\xff" * 32, bytes(31) + b"\x01", b"\x02" + bytes(32), b"\x03" * 33]
        ),
    )


def _ints(choices: Sequence[int], lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(choices), st.integers(lo, hi))


def _expected_length(name: str) -> int | None:
    """The length docs/api.md fixes for a bytes field, guessed from its name."""
    if name.endswith("address"):
        return 20
    if name.endswith(("handle", "handles", "task_id", "hash", "nonce", "challenge", "response")):
        return 32
    if name.endswith(("public_key", "commitments")):
        return 33
    if name.endswith("signature"):
        return 65
    return None


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_BYTES:
        n = _expected_length(fd.name)
        if n is None:
            return interesting_bytes()
        # mostly the right length, so that a draw gets past the length checks
        right = st.binary(min_size=n, max_size=n)
        return st.one_of(right, right, interesting_bytes())
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=40)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _ints(_U32, 0, 2**32 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _ints(_U64, 0, 2**64 - 1)
    if t in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return _ints(_I32, -(2**31), 2**31 - 1)
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return _ints(_I64, -(2**63), 2**63 - 1)
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 300))
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    raise AssertionError(f"unhandled field type {t} of {fd.full_name}")


EnvelopeHook = Callable[[], st.SearchStrategy[SignedEnvelope]]


def proto_messages(
    cls: type[Message],
    *,
    depth: int = 3,
    envelope: EnvelopeHook | None = None,
    max_repeated: int = 4,
) -> st.SearchStrategy[Message]:
    """Random messages of `cls`: each field absent or drawn from its type (see module doc).

    Fields of type SignedEnvelope come from `envelope()` when given (signed envelopes with
    random payloads), otherwise from the generic strategy like any message.
    """
    return _message(cls.DESCRIPTOR, cls, depth, envelope, max_repeated)


def _message(
    desc: Descriptor,
    cls: type[Message],
    depth: int,
    envelope: EnvelopeHook | None,
    max_repeated: int,
) -> st.SearchStrategy[Message]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for fd in desc.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = fd.message_type
            if sub.GetOptions().map_entry or depth <= 0:
                continue
            sub_cls: type[Message] = _class_of(sub)
            if sub.full_name == SignedEnvelope.DESCRIPTOR.full_name and envelope is not None:
                one: st.SearchStrategy[Any] = st.deferred(envelope)
            else:
                one = _message(sub, sub_cls, depth - 1, envelope, max_repeated)
        else:
            one = _scalar(fd)
        optional[fd.name] = st.lists(one, max_size=max_repeated) if fd.is_repeated else one
    return st.fixed_dictionaries({}, optional=optional).map(lambda kw: cls(**kw))


def _class_of(desc: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed` after one to four mutations (bit flip, cut, delete, insert, duplicate, set)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "dup", "set"]))
        n = len(data)
        if kind == "flip" and n:
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[draw(st.integers(0, n)) :]
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "dup" and n:
            i = draw(st.integers(0, n - 1))
            j = draw(st.integers(i + 1, n))
            k = draw(st.integers(0, n))
            data[k:k] = data[i:j]
        elif kind == "set" and n:
            data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def decodes(cls: type[Message], data: bytes) -> bool:
    """Whether `data` parses as `cls` (what grpc does before any nox code runs)."""
    try:
        cls.FromString(data)
    except DecodeError:
        return False
    return True


def requests(seed: bytes, cls: type[Message], *, decodable: bool) -> st.SearchStrategy[bytes]:
    """Raw request bytes, arbitrary or `seed` (a valid request) mutated, that do (or do not)
    parse as `cls`. The two kinds are tested apart: an undecodable request never reaches a
    servicer, so its answer comes from the server plumbing alone."""
    raw = st.one_of(st.binary(max_size=512), mutated(seed), mutated(seed))
    return raw.filter(lambda data: decodes(cls, data) == decodable)


#: Every payload type a signed method or a nested envelope carries (for wrong-type draws).
PAYLOAD_TYPES: tuple[type[Message], ...] = (
    gateway_pb2.GetOperandsPayload,
    gateway_pb2.StoreResultsPayload,
    gateway_pb2.GetOperandsResponsePayload,
    kms_pb2.DelegatePayload,
    kms_pb2.DelegateResponsePayload,
    task_pb2.TaskAssignment,
    task_pb2.TransactionMessage,
    orchestrator_pb2.SubmitResultPayload,
    orchestrator_pb2.HeartbeatPayload,
    orchestrator_pb2.ClaimTasksPayload,
)


@dataclass(frozen=True)
class Signers:
    """Who may sign: the key the method expects, other registered keys, and the receiver."""

    domain: Domain
    audience: bytes
    now: Callable[[], int]
    expected: EnclaveKey
    others: tuple[EnclaveKey, ...] = ()
    ttl: int = 60  # validity of a fault-free envelope (bounds a long poll's wait)
    strangers: tuple[EnclaveKey, ...] = field(
        default_factory=lambda: tuple(EnclaveKey.generate() for _ in range(3))
    )


def sign(key: EnclaveKey, env: SignedEnvelope, domain: Domain) -> bytes:
    """A real signature over `env`'s digest (the declared payload_type is what is signed)."""
    return key.sign_digest(envelope_signing_digest(env, domain))


FAULTS = ("payload", "type", "audience", "window", "nonce", "signer", "garbage", "tamper")


@st.composite
def envelopes(
    draw: st.DrawFn,
    payload_cls: type[Message],
    signers: Signers,
    *,
    nested: EnvelopeHook | None = None,
    depth: int = 3,
) -> SignedEnvelope:
    """A SignedEnvelope for a method taking `payload_cls` (module docstring, strategy (c)).

    Half the draws have no fault in the envelope itself (right type, audience, window, fresh
    nonce, signed by the expected signer; only the payload's fields are random), so they
    reach the checks behind the envelope; the others carry one to three faults.
    """
    now = signers.now()
    faults = set(
        draw(st.one_of(st.just([]), st.lists(st.sampled_from(FAULTS), min_size=1, max_size=3)))
    )
    right_type = payload_cls.DESCRIPTOR.full_name
    if "payload" in faults:
        payload = draw(st.binary(max_size=256))
    elif "type" in faults and draw(st.booleans()):
        other = draw(st.sampled_from(PAYLOAD_TYPES))
        payload = draw(proto_messages(other, envelope=nested, depth=1)).SerializeToString()
    else:
        payload = draw(
            proto_messages(payload_cls, envelope=nested, depth=depth)
        ).SerializeToString()
    ptype = right_type
    if "type" in faults:
        names = [cls.DESCRIPTOR.full_name for cls in PAYLOAD_TYPES if cls is not payload_cls]
        ptype = draw(st.one_of(st.sampled_from(names), st.text(max_size=40)))
    audience = draw(interesting_bytes()) if "audience" in faults else signers.audience
    issued, expires = now, now + signers.ttl
    if "window" in faults:
        issued = draw(st.one_of(st.just(now - 3700), st.just(now + 120), _ints(_U64, 0, 2**64 - 1)))
        expires = draw(st.one_of(st.just(min(issued + 3601, 2**64 - 1)), _ints(_U64, 0, 2**64 - 1)))
    # a fresh nonce outside Hypothesis's draws: shrinking would make every nonce 0x00..00
    nonce = draw(interesting_bytes()) if "nonce" in faults else os.urandom(32)
    env = SignedEnvelope(
        payload=payload,
        payload_type=ptype,
        audience=audience,
        issued_at=issued,
        expires_at=expires,
        nonce=nonce,
    )
    if len(audience) != 20 or len(nonce) != 32 or "garbage" in faults:
        env.signature = draw(interesting_bytes())
        return env
    key = signers.expected
    if "signer" in faults:
        key = draw(st.sampled_from(signers.others + signers.strangers))
    env.signature = sign(key, env, signers.domain)
    if "tamper" in faults:  # changed after signing: recovers to another address
        env.payload = draw(st.binary(max_size=64))
    return env
