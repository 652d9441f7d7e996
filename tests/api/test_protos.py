"""The public API in protos/nox/v1 keeps the promises its comments and docs/api.md make.

The descriptors are compiled here from the .proto sources with `--include_source_info`, so
the comments `grpcurl describe` shows are what is tested; the generated `nox.v1` modules
are checked against the same sources.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from nox import errors

PACKAGE = "nox.v1"
ENVELOPE = ".nox.v1.SignedEnvelope"

# FileDescriptorProto / DescriptorProto / ... field numbers used in SourceCodeInfo paths.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _METHOD = 2, 2

_SIGNED = re.compile(r"Signed: payload (nox\.v1\.\w+), signer (ROLE_\w+), audience ")
_CODE_PREFIX = re.compile(r"^\((\w+)\) ")


@dataclass(frozen=True)
class Api:
    """The compiled nox.v1 files and their leading comments, by element."""

    files: list[descriptor_pb2.FileDescriptorProto]
    comments: dict[str, str]  # "nox.v1.Msg", "nox.v1.Msg.field", "nox.v1.Svc.Rpc", ...

    def messages(self) -> dict[str, descriptor_pb2.DescriptorProto]:
        return {f"{PACKAGE}.{m.name}": m for f in self.files for m in f.message_type}

    def enums(self) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
        return {f"{PACKAGE}.{e.name}": e for f in self.files for e in f.enum_type}

    def services(self) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
        return {s.name: s for f in self.files for s in f.service}

    def comment(self, name: str) -> str:
        return self.comments.get(name, "")


def _leading_comments(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    by_path = {
        tuple(loc.path): loc.leading_comments.strip()
        for loc in fd.source_code_info.location
        if loc.leading_comments.strip()
    }
    out: dict[str, str] = {}

    def message(path: tuple[int, ...], msg: descriptor_pb2.DescriptorProto, name: str) -> None:
        out[name] = by_path.get(path, "")
        for i, field in enumerate(msg.field):
            out[f"{name}.{field.name}"] = by_path.get((*path, _FIELD, i), "")
        for i, oneof in enumerate(msg.oneof_decl):
            if not oneof.name.startswith("_"):  # proto3 `optional` synthetic oneofs
                out[f"{name}.{oneof.name}"] = by_path.get((*path, _ONEOF, i), "")
        for i, nested in enumerate(msg.nested_type):
            if not nested.options.map_entry:
                message((*path, _NESTED, i), nested, f"{name}.{nested.name}")
        for i, enum in enumerate(msg.enum_type):
            enum_type((*path, _NESTED_ENUM, i), enum, f"{name}.{enum.name}")

    def enum_type(
        path: tuple[int, ...], enum: descriptor_pb2.EnumDescriptorProto, name: str
    ) -> None:
        out[name] = by_path.get(path, "")
        for i, value in enumerate(enum.value):
            out[f"{name}.{value.name}"] = by_path.get((*path, _ENUM_VALUE, i), "")

    for i, msg in enumerate(fd.message_type):
        message((_MESSAGE, i), msg, f"{PACKAGE}.{msg.name}")
    for i, enum in enumerate(fd.enum_type):
        enum_type((_ENUM, i), enum, f"{PACKAGE}.{enum.name}")
    for i, svc in enumerate(fd.service):
        out[f"{PACKAGE}.{svc.name}"] = by_path.get((_SERVICE, i), "")
        for j, method in enumerate(svc.method):
            out[f"{PACKAGE}.{svc.name}.{method.name}"] = by_path.get((_SERVICE, i, _METHOD, j), "")
    return out


@pytest.fixture(scope="module")
def api(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Api:
    proto_root = repo_root / "protos"
    sources = sorted(str(p.relative_to(proto_root)) for p in proto_root.glob("nox/v1/*.proto"))
    out = tmp_path_factory.mktemp("descriptors") / "nox_v1.pb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *sources,
        ]
    )
    assert rc == 0, "protoc failed on protos/nox/v1"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    files = [f for f in fds.file if f.package == PACKAGE]
    comments: dict[str, str] = {}
    for f in files:
        comments.update(_leading_comments(f))
    return Api(files=files, comments=comments)


# ---------------------------------------------------------------- docs/api.md method table


@dataclass(frozen=True)
class DocMethod:
    service: str
    method: str
    access: str  # "public", "user" or the signer's "ROLE_..."
    request_payload: str  # "nox.v1.XPayload" or "-"
    response_payload: str  # "nox.v1.XResponsePayload" or "-"
    response_signer: str  # "ROLE_..." or "-"


def _doc_methods(repo_root: Path) -> list[DocMethod]:
    """Rows of the method table in docs/api.md.

    | `Svc.Method` | caller | `request payload` | `response payload` | response signer | ...
    """
    rows = []
    cell = r" ([^|]+?) \|"
    row = re.compile(r"^\| `(\w+)\.(\w+)` \|" + cell * 4)
    for line in (repo_root / "docs" / "api.md").read_text().splitlines():
        m = row.match(line)
        if m:
            access = m.group(3).strip().strip("`")
            rows.append(
                DocMethod(
                    service=m.group(1),
                    method=m.group(2),
                    access=access,
                    request_payload=m.group(4).strip().strip("`"),
                    response_payload=m.group(5).strip().strip("`"),
                    response_signer=m.group(6).strip().strip("`"),
                )
            )
    return rows


def test_docs_list_exactly_the_methods_of_every_service(api: Api, repo_root: Path) -> None:
    documented = {(d.service, d.method) for d in _doc_methods(repo_root)}
    compiled = {(s.name, m.name) for s in api.services().values() for m in s.method}
    assert compiled, "no services compiled"
    assert documented == compiled, (
        f"missing from docs/api.md: {sorted(compiled - documented)}; "
        f"documented but not in protos: {sorted(documented - compiled)}"
    )


def test_generated_modules_serve_the_documented_methods(repo_root: Path) -> None:
    by_service: dict[str, set[str]] = {}
    for d in _doc_methods(repo_root):
        by_service.setdefault(d.service, set()).add(d.method)
    modules = {
        "GatewayService": "gateway",
        "KmsService": "kms",
        "OrchestratorService": "orchestrator",
        "RunnerService": "runner",
    }
    assert set(by_service) == set(modules)
    for service, stem in modules.items():
        pb2 = importlib.import_module(f"nox.v1.{stem}_pb2")
        pb2_grpc = importlib.import_module(f"nox.v1.{stem}_pb2_grpc")
        descriptor = pb2.DESCRIPTOR.services_by_name[service]
        assert {m.name for m in descriptor.methods} == by_service[service]
        servicer = getattr(pb2_grpc, f"{service}Servicer")
        assert callable(getattr(pb2_grpc, f"add_{service}Servicer_to_server"))
        for method in by_service[service]:
            assert callable(getattr(servicer, method)), f"{service}Servicer.{method}"


# ---------------------------------------------------------------- comments


def test_every_element_has_a_leading_comment(api: Api) -> None:
    missing = sorted(name for name, text in api.comments.items() if not text)
    assert not missing, f"elements without a leading comment: {missing}"


def test_every_message_and_field_is_covered_by_the_comment_walk(api: Api) -> None:
    # Guards the test above against a walk that silently skips elements.
    for name, msg in api.messages().items():
        assert name in api.comments
        for field in msg.field:
            assert f"{name}.{field.name}" in api.comments
    for svc in api.services().values():
        for method in svc.method:
            assert f"{PACKAGE}.{svc.name}.{method.name}" in api.comments


def test_every_rpc_has_its_own_request_and_response(api: Api) -> None:
    seen: set[str] = set()
    for svc in api.services().values():
        for m in svc.method:
            assert m.input_type == f".{PACKAGE}.{m.name}Request"
            assert m.output_type == f".{PACKAGE}.{m.name}Response"
            assert not m.client_streaming
            assert not m.server_streaming
            assert m.input_type not in seen
            assert m.output_type not in seen
            seen |= {m.input_type, m.output_type}


# ---------------------------------------------------------------- signed and public calls


def _signed_header(api: Api, message: str) -> tuple[str, str] | None:
    match = _SIGNED.search(" ".join(api.comment(message).split()))
    return (match.group(1), match.group(2)) if match else None


def _envelope_fields(
    msg: descriptor_pb2.DescriptorProto,
) -> list[descriptor_pb2.FieldDescriptorProto]:
    return [f for f in msg.field if f.type_name == ENVELOPE]


@pytest.mark.parametrize("side", ["request", "response"])
def test_signed_messages_carry_only_an_envelope_and_name_their_payload(
    api: Api, repo_root: Path, side: str
) -> None:
    messages = api.messages()
    roles = {v.name for v in api.enums()[f"{PACKAGE}.Role"].value} - {"ROLE_UNSPECIFIED"}
    checked = 0
    for doc in _doc_methods(repo_root):
        name = f"{PACKAGE}.{doc.method}{'Request' if side == 'request' else 'Response'}"
        documented_payload = doc.request_payload if side == "request" else doc.response_payload
        header = _signed_header(api, name)
        if documented_payload == "-":
            if side == "response":
                assert doc.response_signer == "-", name
            assert header is None, f"{name} says it is signed but docs/api.md says not"
            # Nothing unsigned may pose as signed: no `envelope` field (envelopes passed
            # through, like DecryptResponse.kms_delegations, have other names).
            assert "envelope" not in {f.name for f in messages[name].field}, name
            continue
        assert header is not None, f"{name} lacks its 'Signed: payload ..., signer ...' comment"
        payload, role = header
        assert payload == documented_payload, name
        assert role in roles, name
        suffix = "Payload" if side == "request" else "ResponsePayload"
        assert payload == f"{PACKAGE}.{doc.method}{suffix}"
        assert payload in messages, f"{payload} is not defined"
        # The envelope is the whole message: no field travels unsigned beside it.
        fields = list(messages[name].field)
        assert [(f.name, f.number, f.type_name) for f in fields] == [("envelope", 1, ENVELOPE)]
        documented_role = doc.access if side == "request" else doc.response_signer
        assert documented_role == role, f"{name}: docs say {documented_role}, comment says {role}"
        checked += 1
    assert checked >= 4  # GetOperands, StoreResults, Delegate, Heartbeat, ClaimTasks, ...


def test_public_calls_take_no_envelope(api: Api, repo_root: Path) -> None:
    messages = api.messages()
    public = [d for d in _doc_methods(repo_root) if d.access in {"public", "user"}]
    assert {"GetGatewayInfo", "GetPublicKey", "GetHandleStatus", "GetTaskStatus"} <= {
        d.method for d in public
    }
    for doc in public:
        request = messages[f"{PACKAGE}.{doc.method}Request"]
        assert doc.request_payload == "-"
        assert "envelope" not in {f.name for f in request.field}
        assert not _envelope_fields(request)
        word = "Public:" if doc.access == "public" else "User-authorized:"
        assert word in api.comment(f"{PACKAGE}.{doc.method}Request"), doc.method


def test_every_payload_message_is_used_by_a_signed_call(api: Api, repo_root: Path) -> None:
    used = {d.request_payload for d in _doc_methods(repo_root)} | {
        d.response_payload for d in _doc_methods(repo_root)
    }
    payloads = {name for name in api.messages() if name.endswith("Payload")}
    assert payloads == used - {"-"}


def test_every_signed_response_payload_starts_with_the_request_hash(api: Api) -> None:
    payloads = [m for name, m in api.messages().items() if name.endswith("ResponsePayload")]
    assert len(payloads) >= 6
    for msg in payloads:
        first = msg.field[0]
        assert (first.name, first.number, first.type) == (
            "request_hash",
            1,
            descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        ), msg.name


# ---------------------------------------------------------------- on-chain codes


def _solidity_constants(path: Path, prefix: str) -> dict[str, int]:
    pattern = re.compile(rf"uint8 (?:public|internal) constant {prefix}(\w+) = (\d+);")
    return {m.group(1): int(m.group(2)) for m in pattern.finditer(path.read_text())}


def test_role_codes_match_the_registry_contract(api: Api, repo_root: Path) -> None:
    on_chain = _solidity_constants(repo_root / "registry_contracts/src/NoxRegistry.sol", "ROLE_")
    proto = {
        v.name.removeprefix("ROLE_"): v.number
        for v in api.enums()[f"{PACKAGE}.Role"].value
        if v.number != 0
    }
    assert on_chain
    assert proto == on_chain


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def test_operator_table_in_comments_matches_contract_and_engine(api: Api, repo_root: Path) -> None:
    text = " ".join(api.comment(f"{PACKAGE}.Operation.operator").split())
    table = {
        _snake(name): int(code) for code, name in re.findall(r"(?:: |, )(\d+) ([A-Z]\w+)", text)
    }
    on_chain = _solidity_constants(repo_root / "registry_contracts/src/NoxCompute.sol", "OP_")
    assert len(table) == 19
    assert table == on_chain
    operators = importlib.import_module("nox.compute.operators")
    assert table == {op.name: op.value for op in operators.Operator}


# ---------------------------------------------------------------- error reasons


def _reasons(api: Api) -> dict[str, str]:
    """Wire reason -> the gRPC code name its comment documents."""
    enum = api.enums()[f"{PACKAGE}.ErrorReason"]
    out = {}
    for value in enum.value:
        if value.number == 0:
            continue
        assert value.name.startswith("ERROR_REASON_")
        comment = api.comment(f"{PACKAGE}.ErrorReason.{value.name}")
        match = _CODE_PREFIX.match(comment)
        assert match, f"{value.name}: comment must start with '(GRPC_CODE) '"
        assert match.group(1) in grpc.StatusCode.__members__, value.name
        out[value.name.removeprefix("ERROR_REASON_")] = match.group(1)
    return out


_BASES = {
    cls.__name__: cls.code.name
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.NoxError)
}


def _base_reasons() -> dict[str, str]:
    return {
        cls.reason: cls.code.name
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.NoxError)
    }


def test_generic_reasons_are_the_error_base_classes(api: Api) -> None:
    documented = _reasons(api)
    for reason, code in _base_reasons().items():
        assert documented.get(reason) == code, f"{reason} must be documented as ({code})"


@dataclass(frozen=True)
class _Use:
    reason: str
    code: str | None  # resolved gRPC code name, None when not resolvable statically
    where: str


def _reason_uses(package: Path) -> Iterator[_Use]:
    """Every reason a `nox` error class declares or a raise passes, with its code if known.

    Parsed, not imported, so half-written modules elsewhere cannot break this test.
    """
    classes: dict[str, tuple[list[str], str | None]] = {}  # name -> (bases, own code)
    kwargs: list[tuple[str, str, str]] = []
    for path in sorted(package.rglob("*.py")):
        if "v1" in path.relative_to(package).parts[:1]:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                reason = None
                code = None
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "code" for t in stmt.targets)
                        and isinstance(stmt.value, ast.Attribute)
                    ):
                        code = stmt.value.attr
                    if (
                        isinstance(stmt, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "reason" for t in stmt.targets)
                    ) or (
                        isinstance(stmt, ast.AnnAssign)
                        and isinstance(stmt.target, ast.Name)
                        and stmt.target.id == "reason"
                    ):
                        value = stmt.value
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            reason = value.value
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                classes[node.name] = (bases, code)
                if reason is not None:
                    kwargs.append((reason, node.name, f"{path}:{node.lineno}"))
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if (
                        kw.arg == "reason"
                        and isinstance(kw.value, ast.Constant)
                        and isinstance(kw.value.value, str)
                    ):
                        func = node.func
                        name = func.id if isinstance(func, ast.Name) else ""
                        kwargs.append((kw.value.value, name, f"{path}:{node.lineno}"))

    def code_of(name: str, depth: int = 0) -> str | None:
        if name in _BASES and name in vars(errors):
            return _BASES[name]
        if name not in classes or depth > 20:
            return None
        bases, own_code = classes[name]
        if own_code is not None:
            return own_code
        for base in bases:
            code = code_of(base, depth + 1)
            if code is not None:
                return code
        return None

    for reason, cls_name, where in kwargs:
        yield _Use(reason, code_of(cls_name), where)


def test_every_reason_used_in_nox_is_in_the_error_reason_enum(api: Api, repo_root: Path) -> None:
    documented = _reasons(api)
    uses = list(_reason_uses(repo_root / "nox"))
    assert any(u.reason == "NONCE_REPLAYED" for u in uses), "the scan found no envelope errors"
    missing = sorted({f"{u.reason} ({u.where})" for u in uses if u.reason not in documented})
    assert not missing, f"add these to ErrorReason in protos/nox/v1/error.proto: {missing}"
    wrong = sorted(
        f"{u.reason}: raised as {u.code}, documented as {documented[u.reason]} ({u.where})"
        for u in uses
        if u.code is not None and u.reason in documented and documented[u.reason] != u.code
    )
    assert not wrong, wrong


def test_docs_list_every_error_reason_with_its_code(api: Api, repo_root: Path) -> None:
    text = (repo_root / "docs" / "api.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| `([A-Z_]+)` \|", text, re.MULTILINE))
    assert rows == _reasons(api)


# ---------------------------------------------------------------- descriptor set for reflection


def test_committed_descriptor_set_has_comments_and_matches_generated_code(repo_root: Path) -> None:
    """nox/v1/descriptor_set.binpb is what a reflection service serves so `grpcurl describe`
    shows comments (the *_pb2 descriptors have none); it must describe the same API."""
    from google.protobuf import descriptor_pool

    fds = descriptor_pb2.FileDescriptorSet.FromString(
        (repo_root / "nox" / "v1" / "descriptor_set.binpb").read_bytes()
    )
    names = {f.name for f in fds.file}
    assert names == {f"nox/v1/{p.name}" for p in (repo_root / "protos/nox/v1").glob("*.proto")}
    for name in names:
        importlib.import_module(f"nox.v1.{Path(name).stem}_pb2")
    pool = descriptor_pool.Default()
    for committed in fds.file:
        assert len(committed.source_code_info.location) > 0, committed.name
        runtime = descriptor_pb2.FileDescriptorProto()
        pool.FindFileByName(committed.name).CopyToProto(runtime)
        bare = descriptor_pb2.FileDescriptorProto()
        bare.CopyFrom(committed)
        bare.ClearField("source_code_info")
        _clear_json_names(bare.message_type)  # protoc fills them in descriptor sets only
        _clear_json_names(runtime.message_type)
        assert bare == runtime, committed.name


def _clear_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for msg in messages:
        for field in msg.field:
            field.ClearField("json_name")
        _clear_json_names(msg.nested_type)
