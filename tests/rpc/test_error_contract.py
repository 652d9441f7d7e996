"""One error contract: every reason declared once, each with its class, each round-tripping.

The table of record is `protos/nox/v1/error.proto`'s `ErrorReason` enum, whose comments name
the gRPC code each reason travels with; the Python classes are checked against it here
(oasis-core's `errors.New` panics on a duplicate (module, code); this test is our panic).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

import nox
from nox.errors import RETRYABLE_KEY, NoxError, Unavailable
from nox.rpc import ServiceSpec, create_server
from nox.rpc.client import ChannelSettings, class_for_reason, create_channel
from nox.rpc.server import ServerSettings

REPO = Path(__file__).resolve().parents[2]
ERROR_PROTO = REPO / "protos" / "nox" / "v1" / "error.proto"
# The enum entry and the "(CODE)" its comment starts with.
_ENTRY = re.compile(
    r"// \((?P<code>[A-Z_]+)\)[^\n]*\n(?:\s*//[^\n]*\n)*\s*ERROR_REASON_(?P<reason>\w+) = \d+;"
)
_NAME = re.compile(r"ERROR_REASON_(\w+) = \d+;")
_UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]+$")


def _import_everything() -> None:
    for module in pkgutil.walk_packages(nox.__path__, "nox."):
        if ".migrations" in module.name:  # alembic env scripts run on import
            continue
        importlib.import_module(module.name)


def _declarers() -> dict[str, list[type[NoxError]]]:
    """reason -> the classes that set it themselves (not by inheritance)."""
    _import_everything()
    found: dict[str, list[type[NoxError]]] = defaultdict(list)
    pending: list[type[NoxError]] = [NoxError]
    seen: set[type[NoxError]] = set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if "reason" in vars(cls) and cls.__module__.split(".")[0] == "nox":  # not tests' own
            found[vars(cls)["reason"]].append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.fixture(scope="module")
def declarers() -> dict[str, list[type[NoxError]]]:
    return _declarers()


@pytest.fixture(scope="module")
def enum_codes() -> dict[str, str]:
    text = ERROR_PROTO.read_text()
    codes = {m["reason"]: m["code"] for m in _ENTRY.finditer(text)}
    names = set(_NAME.findall(text)) - {"UNSPECIFIED"}
    assert names == set(codes), f"enum entries without a (CODE) comment: {names - set(codes)}"
    return codes


def test_every_reason_is_declared_by_exactly_one_class(
    declarers: dict[str, list[type[NoxError]]],
) -> None:
    twice = {
        reason: sorted(f"{c.__module__}.{c.__qualname__}" for c in classes)
        for reason, classes in declarers.items()
        if len(classes) > 1
    }
    assert twice == {}, f"reasons declared by more than one class: {twice}"


def test_the_classes_and_the_proto_enum_name_the_same_reasons(
    declarers: dict[str, list[type[NoxError]]], enum_codes: dict[str, str]
) -> None:
    assert sorted(set(declarers) - set(enum_codes)) == [], "classes whose reason is not in the enum"
    assert sorted(set(enum_codes) - set(declarers)) == [], "enum reasons without a class"


def test_each_class_travels_with_the_code_its_enum_entry_names(
    declarers: dict[str, list[type[NoxError]]], enum_codes: dict[str, str]
) -> None:
    wrong = {
        reason: (classes[0].code.name, enum_codes[reason])
        for reason, classes in declarers.items()
        if classes[0].code.name != enum_codes[reason]
    }
    assert wrong == {}, "reason: (class code, enum comment code)"


def _literal_reasons(path: Path) -> Iterator[tuple[int, str]]:
    """`reason="UPPER_SNAKE"` keyword arguments: a reason made up at a raise site."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if (
                keyword.arg == "reason"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and _UPPER_SNAKE.match(value.value)
            ):
                yield node.lineno, value.value


def test_no_raise_site_makes_up_a_reason_string() -> None:
    sources = [p for p in (REPO / "nox").rglob("*.py") if "v1" not in p.relative_to(REPO).parts]
    inline = [
        f"{path.relative_to(REPO)}:{line}: {reason}"
        for path in sources
        for line, reason in _literal_reasons(path)
    ]
    assert inline == [], "raise the reason's class instead of passing reason='...'"


def test_the_literal_check_finds_an_inline_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('raise NoxError("x", reason="MADE_UP")\nraise NoxError("y", reason=name)\n')
    assert list(_literal_reasons(bad)) == [(1, "MADE_UP")]


_TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
}


def test_transient_errors_are_retryable_and_refusals_are_not(
    declarers: dict[str, list[type[NoxError]]],
) -> None:
    """A limit or a precondition may be either (a rate limit passes; a conflict does not)."""
    wrong = {
        reason: (cls.code.name, cls.retryable)
        for reason, (cls, *_) in declarers.items()
        if (cls.code in _TRANSIENT and not cls.retryable)
        or (cls.code in _REFUSALS and cls.retryable)
    }
    assert wrong == {}


def _instance(cls: type[NoxError], message: str) -> NoxError:
    error = cls.__new__(cls)  # some classes take other constructor arguments
    NoxError.__init__(error, message, metadata={"field": "x"})
    return error


_METHOD = "/noxtest.v1.RaiseService/Raise"


@pytest.fixture
async def raising(
    declarers: dict[str, list[type[NoxError]]],
) -> AsyncIterator[grpc.aio.Channel]:
    """A real nox server whose one raw-bytes method raises the class named by the request."""
    by_reason = {reason: classes[0] for reason, classes in declarers.items()}

    async def raise_named(request: bytes, context: object) -> bytes:
        reason, _, override = request.decode().partition(":")
        error = _instance(by_reason[reason], f"raised {reason}")
        if override:
            NoxError.__init__(
                error, error.message, metadata=error.metadata, retryable=override == "true"
            )
        raise error

    def add(servicer: object, server: grpc.aio.Server) -> None:
        del servicer
        handler = grpc.unary_unary_rpc_method_handler(raise_named)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("noxtest.v1.RaiseService", {"Raise": handler}),)
        )

    server = create_server(
        [ServiceSpec("noxtest.v1.RaiseService", add, object())],
        settings=ServerSettings(graceful_shutdown_seconds=0),
    )
    await server.start()
    channel = create_channel(server.target, ChannelSettings())
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(grace=0)


@pytest.mark.integration
async def test_every_reason_round_trips_to_its_own_class(
    declarers: dict[str, list[type[NoxError]]], raising: grpc.aio.Channel
) -> None:
    method = raising.unary_unary(_METHOD)
    wrong = {}
    for reason, (cls, *_) in sorted(declarers.items()):
        with pytest.raises(NoxError) as caught:
            await method(reason.encode())
        got = caught.value
        if (type(got), got.reason, got.retryable, got.metadata) != (
            cls,
            reason,
            cls.retryable,
            {"field": "x"},
        ):
            wrong[reason] = (type(got).__qualname__, got.reason, got.retryable, got.metadata)
        assert class_for_reason(reason) is cls
    assert wrong == {}


@pytest.mark.integration
async def test_an_instance_retryable_override_survives_the_wire(
    raising: grpc.aio.Channel,
) -> None:
    method = raising.unary_unary(_METHOD)
    with pytest.raises(Unavailable) as caught:
        await method(b"UNAVAILABLE:false")
    assert caught.value.retryable is False
    assert caught.value.metadata[RETRYABLE_KEY] == "false"
    with pytest.raises(Unavailable) as again:
        await method(b"UNAVAILABLE")
    assert again.value.retryable is True
