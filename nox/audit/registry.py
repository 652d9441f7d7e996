"""`audit_registry`: re-verify every NoxRegistry registration off-chain.

For each enclave that ever registered (from the `NodeRegistered` events) the audit checks,
in order, and stops at the first failure, which becomes the node's FAIL reason:

1. the raw quote of its current registration is in the events (QUOTE_NOT_FOUND) and hashes
   to the on-chain `quoteHash` (by construction of `read_registrations`);
2. full DCAP verification through `attestation` with the auditor's trusted roots and
   collateral (the attestation error's reason: SIGNATURE_INVALID, UNTRUSTED_ROOT,
   COLLATERAL_EXPIRED, ...; COLLATERAL_UNAVAILABLE when none matches the platform), then the
   TD attribute and TCB status policy;
3. REPORTDATA binds the enclave address and keccak256(extData) of the registration as
   recorded on-chain: role, operator, chain id, registry address, endpoint
   (REPORT_DATA_MISMATCH);
4. the workload id computed from the quote equals the on-chain one (WORKLOAD_ID_MISMATCH)
   and is allowlisted for the role now (WORKLOAD_NOT_ALLOWED).

Status (active, expired, revoked) is the on-chain state at the audit time `now` (a node
whose workload governance disallowed counts as revoked, as `isActive` has it); the
verification is run for every node whatever its status, so a revoked node's quote is
reported too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attestation import (
    AttestationError,
    DualVerifier,
    Policy,
    TdReport,
    check_binding,
    ext_data,
    parse_quote,
    workload_id,
)
from attestation.policy import check_tcb
from nox.audit.collateral import CollateralSource
from nox.audit.exceptions import (
    AuditCheckFailed,
    QuoteNotFound,
    QuoteUnsupported,
    WorkloadIdMismatch,
)
from nox.audit.registrations import Registration, read_registrations
from nox.chain.backend import ChainBackend
from nox.chain.contracts import Address, RegistryClient, to_bytes20, to_checksum
from nox.chain.exceptions import WorkloadNotAllowed
from nox.errors import NoxError

ROLE_NAMES = {1: "orchestrator", 2: "runner", 3: "gateway", 4: "kms", 5: "ingestor"}


@dataclass(frozen=True)
class NodeVerdict:
    """What the audit found about one registered enclave."""

    address: bytes
    role: int
    operator: bytes
    #: The workload id recorded on-chain.
    workload_id: bytes
    #: "active", "expired" or "revoked" at the audit time.
    status: str
    registered_at: int
    expires_at: int
    endpoint: str
    quote_hash: bytes
    registrations: int
    ok: bool
    #: UPPER_SNAKE reason of the first failed check (None when ok).
    reason: str | None = None
    detail: str | None = None
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    verifiers: tuple[str, ...] = ()
    workload_allowed: bool = False

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, str(self.role))

    @property
    def verdict(self) -> str:
        return "OK" if self.ok else "FAIL"

    def to_json(self) -> dict[str, Any]:
        return {
            "address": to_checksum(self.address),
            "role": self.role_name,
            "operator": to_checksum(self.operator),
            "workload_id": "0x" + self.workload_id.hex(),
            "workload_allowed": self.workload_allowed,
            "status": self.status,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
            "endpoint": self.endpoint,
            "quote_hash": "0x" + self.quote_hash.hex(),
            "registrations": self.registrations,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "verifiers": list(self.verifiers),
            "verdict": self.verdict,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class _Checked:
    tcb_status: str
    advisory_ids: tuple[str, ...]
    verifiers: tuple[str, ...]


def node_status(reg: Registration, now: int) -> str:
    """On-chain status at `now`, as the contract's `isActive` judges it: "revoked" when the
    enclave was revoked or governance disallowed its workload, "expired" past `expiresAt`."""
    if reg.record.revoked or not reg.workload_allowed:
        return "revoked"
    if now >= reg.record.expires_at:
        return "expired"
    return "active"


def check_registration(
    reg: Registration,
    *,
    chain_id: int,
    registry: bytes,
    verifier: DualVerifier,
    collateral_for: CollateralSource,
    policy: Policy,
    now: int,
) -> _Checked:
    """Run the checks of the module docstring; raise AuditCheckFailed naming the first
    failure (the attestation package's reason for DCAP and policy failures)."""
    record = reg.record
    if reg.quote is None:
        raise QuoteNotFound(
            "no NodeRegistered event carries a quote matching the on-chain quote hash"
        )
    try:
        quote = parse_quote(reg.quote)
        verdict = verifier.verify(reg.quote, collateral_for(reg.quote), now=now)
        check_tcb(verdict.status, verdict.advisory_ids, policy)
    except AttestationError as exc:
        raise AuditCheckFailed(f"[{exc.field}] {exc.message}", reason=exc.reason) from None
    td = quote.body
    if not isinstance(td, TdReport):
        raise QuoteUnsupported("the quote is not a TDX quote")
    try:
        check_binding(
            td.report_data,
            record.address,
            ext_data(record.role, record.operator, chain_id, registry, record.endpoint),
        )
    except AttestationError as exc:
        raise AuditCheckFailed(f"[{exc.field}] {exc.message}", reason=exc.reason) from None
    computed = workload_id(td)
    if computed != record.workload_id:
        raise WorkloadIdMismatch(
            f"quote measures workload 0x{computed.hex()}, the registry records "
            f"0x{record.workload_id.hex()}"
        )
    if not reg.workload_allowed:
        raise WorkloadNotAllowed(
            f"workload 0x{computed.hex()} is not allowlisted for role "
            f"{ROLE_NAMES.get(record.role, record.role)}"
        )
    return _Checked(verdict.status, tuple(verdict.advisory_ids), tuple(verdict.verifiers))


def audit_registrations(
    registrations: Sequence[Registration],
    *,
    chain_id: int,
    registry: Address,
    trusted_roots: Sequence[bytes],
    collateral_for: CollateralSource,
    now: int,
    policy: Policy | None = None,
    verifier: DualVerifier | None = None,
) -> list[NodeVerdict]:
    """One verdict per registration (see `check_registration`), in the given order."""
    policy = policy or Policy.any_tcb_status()
    verifier = verifier or DualVerifier.default(trusted_roots, policy=policy)
    registry20 = to_bytes20(registry)
    out: list[NodeVerdict] = []
    for reg in registrations:
        r = reg.record
        base: dict[str, Any] = {
            "address": r.address,
            "role": r.role,
            "operator": r.operator,
            "workload_id": r.workload_id,
            "status": node_status(reg, now),
            "registered_at": r.registered_at,
            "expires_at": r.expires_at,
            "endpoint": r.endpoint,
            "quote_hash": r.quote_hash,
            "registrations": reg.registrations,
            "workload_allowed": reg.workload_allowed,
        }
        try:
            checked = check_registration(
                reg,
                chain_id=chain_id,
                registry=registry20,
                verifier=verifier,
                collateral_for=collateral_for,
                policy=policy,
                now=now,
            )
        except NoxError as exc:
            out.append(NodeVerdict(**base, ok=False, reason=exc.reason, detail=exc.message))
            continue
        out.append(
            NodeVerdict(
                **base,
                ok=True,
                tcb_status=checked.tcb_status,
                advisory_ids=checked.advisory_ids,
                verifiers=checked.verifiers,
            )
        )
    return out


def audit_registry(
    backend: ChainBackend,
    registry_address: Address,
    *,
    trusted_roots: Sequence[bytes],
    collateral_for: CollateralSource,
    now: int | None = None,
    policy: Policy | None = None,
    verifier: DualVerifier | None = None,
    from_block: int = 0,
) -> list[NodeVerdict]:
    """Read every registration of the registry at `registry_address` and verify it.

    `trusted_roots` are DER root CAs (Intel's for production; a simulated deployment's dev
    root must be passed explicitly). `now` (Unix seconds, default the wall clock) is the
    time for both the on-chain status and the collateral windows. `policy` defaults to
    accepting every non-terminal TCB status, which the verdict then reports; `verifier`
    defaults to the dual verifier (dcap-qvl as well, where installed).
    """
    client = RegistryClient(backend, registry_address)
    registrations = read_registrations(client, from_block=from_block)
    return audit_registrations(
        registrations,
        chain_id=backend.chain_id,
        registry=registry_address,
        trusted_roots=trusted_roots,
        collateral_for=collateral_for,
        now=int(time.time()) if now is None else now,
        policy=policy,
        verifier=verifier,
    )


def all_active_ok(verdicts: Sequence[NodeVerdict]) -> bool:
    """True when every active node verified (the CLI's exit status 0)."""
    return all(v.ok for v in verdicts if v.status == "active")
