"""Rendering of registry audit verdicts: a fixed-width table for people, JSON for tools."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nox.audit.registry import NodeVerdict, all_active_ok
from nox.audit.task import TaskAudit
from nox.chain.contracts import to_checksum

COLUMNS = (
    "ROLE",
    "ADDRESS",
    "OPERATOR",
    "WORKLOAD ID",
    "STATUS",
    "EXPIRES (UTC)",
    "TCB",
    "VERDICT",
)


def _short(data: bytes) -> str:
    h = data.hex()
    return f"0x{h[:8]}…{h[-6:]}"


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row(v: NodeVerdict) -> tuple[str, ...]:
    verdict = "OK" if v.ok else f"FAIL {v.reason}"
    return (
        v.role_name,
        to_checksum(v.address),
        to_checksum(v.operator),
        _short(v.workload_id),
        v.status,
        _when(v.expires_at),
        v.tcb_status or "-",
        verdict,
    )


def render_table(verdicts: Sequence[NodeVerdict]) -> str:
    """The verdict table, then one line of detail per failed node, then a summary line."""
    rows = [COLUMNS, *(_row(v) for v in verdicts)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    failed = [v for v in verdicts if not v.ok]
    if failed:
        lines.append("")
        for v in failed:
            lines.append(f"{to_checksum(v.address)} {v.reason}: {v.detail}")
    active = [v for v in verdicts if v.status == "active"]
    bad = sum(1 for v in active if not v.ok)
    lines.append("")
    lines.append(
        f"{len(verdicts)} registered, {len(active)} active, "
        f"{len(active) - bad} active verified, {bad} active failing"
    )
    return "\n".join(lines)


def render_json(
    verdicts: Sequence[NodeVerdict], *, chain_id: int, registry: str, checked_at: int
) -> dict[str, Any]:
    """One JSON object: the audit's context, `ok` (the exit status's meaning) and `nodes`."""
    return {
        "chain_id": chain_id,
        "registry": to_checksum(registry),
        "checked_at": checked_at,
        "ok": all_active_ok(verdicts),
        "nodes": [v.to_json() for v in verdicts],
    }


def render_task(audit: TaskAudit) -> str:
    """Who executed the task, the signatures backing it, then every check."""
    out = [f"task 0x{audit.task_id.hex()}"]
    if audit.transaction_hash is not None:
        out.append(
            f"transaction 0x{audit.transaction_hash.hex()} (chain {audit.chain_id}, "
            f"block {audit.block_number})"
        )
    if audit.runners:
        out.append("executed by runner " + ", ".join(to_checksum(r) for r in audit.runners))
    if audit.orchestrator is not None:
        out.append(f"assigned and submitted by orchestrator {to_checksum(audit.orchestrator)}")
    if audit.gateway is not None:
        out.append(f"stored by gateway {to_checksum(audit.gateway)}")
    if audit.output_handles:
        out.append(f"outputs ({len(audit.output_handles)}):")
        out.extend(f"  0x{h.hex()}" for h in audit.output_handles)
    if audit.signatures:
        out.append("signatures:")
        for s in audit.signatures:
            node = s.node
            attested = (
                "not registered"
                if node is None
                else f"{node.role_name}, {node.status}, quote "
                + (f"verifies ({node.tcb_status})" if node.ok else f"FAILS {node.reason}")
            )
            out.append(
                f"  {s.what:<18} {s.payload_type:<28} signer {to_checksum(s.signer)} "
                f"[{attested}] issued {_when(s.issued_at)}"
            )
    out.append("checks:")
    for f in audit.findings:
        mark = "ok  " if f.ok else "FAIL"
        reason = "" if f.ok else f" {f.reason}:"
        out.append(f"  [{mark}] {f.check} —{reason} {f.detail}")
    failed = sum(1 for f in audit.findings if not f.ok)
    out.append(
        "verdict: OK" if audit.ok else f"verdict: FAIL ({failed} of {len(audit.findings)} checks)"
    )
    return "\n".join(out)
