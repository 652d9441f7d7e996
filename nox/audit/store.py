"""`noxctl audit store`: every stored row against its producer binding (nox.crypto.binding).

The gateway's database no longer guards integrity; the bindings do. For each row the audit
recomputes the signed digest from the row itself (handle, K, nonce, ciphertext, value tag
with its salt, origin task, Merkle siblings), recovers the producer and checks it against
the registry audit: registered in the role the row implies (gateway for an input, runner for
a task output), never revoked, its quote verified. A row that fails is reported with its
reason: replaced or altered (SIGNER_NOT_REGISTERED: the digest no longer recovers to a
registered producer), its binding removed (BINDING_MISSING), or a producer that does not
count (ROLE_MISMATCH, REVOKED, ATTESTATION_FAILED, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nox.audit.registry import ROLE_NAMES, NodeVerdict
from nox.chain.contracts import to_checksum
from nox.chain.exceptions import AttestationFailed, NodeRevoked, RoleMismatch, SignerNotRegistered
from nox.crypto.binding import BindingVerifier
from nox.crypto.eip712 import Domain
from nox.errors import NoxError
from nox.gateway.bindings import evidence
from nox.gateway.store import StoredHandle


@dataclass(frozen=True)
class RowVerdict:
    """What the audit found about one stored row."""

    handle: bytes
    origin_task: bytes | None
    producer: bytes | None
    ok: bool
    why: str = ""
    """UPPER_SNAKE reason of the failure (empty when ok)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": "0x" + self.handle.hex(),
            "origin_task": None if self.origin_task is None else "0x" + self.origin_task.hex(),
            "producer": None if self.producer is None else to_checksum(self.producer),
            "ok": self.ok,
            "reason": self.why,
        }


class _Producers:
    """A ProducerDirectory over the registry audit's verdicts (expired counts, as in
    `RegistryView.require_producer`)."""

    def __init__(self, nodes: Mapping[bytes, NodeVerdict]) -> None:
        self._nodes = nodes

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        del now
        node = self._nodes.get(address)
        if node is None:
            raise SignerNotRegistered("never registered")
        if node.role != role:
            raise RoleMismatch(f"registered as {node.role_name}, not {ROLE_NAMES.get(role, role)}")
        if node.status == "revoked":
            raise NodeRevoked("revoked")
        if not node.ok:
            raise AttestationFailed(f"quote does not verify ({node.reason})")


def audit_rows(
    rows: Iterable[StoredHandle], *, domain: Domain, nodes: Mapping[bytes, NodeVerdict], now: int
) -> list[RowVerdict]:
    """One verdict per row, in the order given."""
    verifier = BindingVerifier(domain, _Producers(nodes))
    verdicts = []
    for row in rows:
        r = row.record
        try:
            (producer,) = verifier.verify(
                [(r.handle, r.ephemeral_public_key, evidence(row))], now=now
            )
        except NoxError as exc:
            why = exc.metadata.get("why", exc.reason)
            verdicts.append(RowVerdict(r.handle, row.origin_task, None, False, why))
        else:
            verdicts.append(RowVerdict(r.handle, row.origin_task, producer, True))
    return verdicts


def render_rows(verdicts: list[RowVerdict]) -> str:
    """A table of the rows that failed, and a count."""
    bad = [v for v in verdicts if not v.ok]
    lines = [f"{len(verdicts)} rows, {len(verdicts) - len(bad)} bound, {len(bad)} failing"]
    lines += [f"FAIL 0x{v.handle.hex()} {v.why}" for v in bad]
    return "\n".join(lines)
