"""Errors of the chain layer (contract reverts, backends, artifacts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nox.errors import FailedPrecondition, NoxError, PermissionDenied, Unavailable


class ArtifactNotFound(NoxError):
    """A contract artifact is missing (run registry_contracts/build.py)."""

    reason = "ARTIFACT_NOT_FOUND"


class ChainUnavailable(Unavailable):
    """The chain (JSON-RPC endpoint or anvil process) cannot be reached or started."""

    reason = "CHAIN_UNAVAILABLE"


class ContractReverted(FailedPrecondition):
    """A contract call reverted; `error_name` and `error_args` decode its custom error."""

    reason = "CONTRACT_REVERTED"

    def __init__(
        self,
        error_name: str,
        error_args: Mapping[str, Any] | None = None,
        *,
        data: bytes = b"",
    ) -> None:
        args = dict(error_args or {})
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        super().__init__(f"{error_name}({shown})", metadata={"error": error_name})
        self.error_name = error_name
        self.error_args = args
        self.data = data


class NodeNotAuthorized(PermissionDenied):
    """A peer is not an active, attested node of the required role (reason says why)."""

    reason = "NODE_NOT_AUTHORIZED"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
