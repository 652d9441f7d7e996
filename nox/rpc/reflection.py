"""Server reflection that serves the API's own comments.

grpcio-reflection answers from the process's descriptor pool, and the generated `_pb2`
modules load their descriptors without source info, so `grpcurl describe` would show no
comments. The generator also writes `nox/v1/descriptor_set.binpb` (with source info); this
module answers reflection for the `nox/v1/*.proto` files from that set and for everything
else (health, reflection itself, test services) from the default pool.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection

DESCRIPTOR_SET = "descriptor_set.binpb"


@cache
def _documented_files() -> dict[str, bytes]:
    """Serialized FileDescriptorProtos (with comments) of the nox.v1 API, by file name."""
    data = resources.files("nox.v1").joinpath(DESCRIPTOR_SET).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f.SerializeToString() for f in fds.file}


class _DocumentedFile:
    """A file descriptor whose CopyToProto also fills in source info (comments)."""

    def __init__(self, descriptor: Any, serialized: bytes | None) -> None:
        self._descriptor = descriptor
        self._serialized = serialized
        self.name: str = descriptor.name

    @property
    def dependencies(self) -> list[Any]:
        return [_wrap(dep) for dep in self._descriptor.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        if self._serialized is None:
            self._descriptor.CopyToProto(proto)
        else:
            proto.MergeFromString(self._serialized)


def _wrap(descriptor: Any) -> _DocumentedFile:
    return _DocumentedFile(descriptor, _documented_files().get(descriptor.name))


class DocumentedPool:
    """The subset of DescriptorPool that grpcio-reflection uses, answering with comments."""

    def __init__(self, base: descriptor_pool.DescriptorPool | None = None) -> None:
        self._base = base if base is not None else descriptor_pool.Default()

    def FindFileByName(self, name: str) -> _DocumentedFile:
        return _wrap(self._base.FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> _DocumentedFile:
        return _wrap(self._base.FindFileContainingSymbol(symbol))

    def __getattr__(self, name: str) -> Any:  # FindMessageTypeByName, FindAllExtensions, ...
        return getattr(self._base, name)


def enable_reflection(service_names: tuple[str, ...], server: Any) -> None:
    """Register reflection for `service_names` (plus itself) on `server`, with comments."""
    reflection.enable_server_reflection(
        (*service_names, reflection.SERVICE_NAME),
        server,
        # Duck-typed: reflection calls only the Find* methods DocumentedPool provides.
        pool=cast(descriptor_pool.DescriptorPool, DocumentedPool()),
    )
