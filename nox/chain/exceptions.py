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


class SignerNotRegistered(NodeNotAuthorized):
    """No registration of this enclave address is known."""

    reason = "SIGNER_NOT_REGISTERED"


class RoleMismatch(NodeNotAuthorized):
    """The enclave is registered in another role than the one the request needs."""

    reason = "ROLE_MISMATCH"


class NodeRevoked(NodeNotAuthorized):
    """Governance revoked the enclave (or its workload id)."""

    reason = "REVOKED"


class RegistrationExpired(NodeNotAuthorized):
    """The enclave's registration expired; it must re-register with a fresh quote."""

    reason = "REGISTRATION_EXPIRED"


class WorkloadNotAllowed(NodeNotAuthorized):
    """The enclave's workload id is not (or no longer) allowlisted for its role."""

    reason = "WORKLOAD_NOT_ALLOWED"


class AttestationFailed(NodeNotAuthorized):
    """The registered quote is unavailable or does not verify (DCAP chain, policy)."""

    reason = "ATTESTATION_FAILED"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
