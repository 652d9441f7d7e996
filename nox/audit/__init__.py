"""Auditor tools: re-verify the registry's nodes and the evidence behind a task (docs/audit.md)."""

from __future__ import annotations

from nox.audit.collateral import CollateralSet, CollateralSource, fetch_collateral
from nox.audit.exceptions import (
    AuditCheckFailed,
    AuditInputError,
    CollateralUnavailable,
    TaskNotFound,
)
from nox.audit.registrations import Registration, read_registrations
from nox.audit.registry import (
    NodeVerdict,
    all_active_ok,
    audit_registrations,
    audit_registry,
    check_registration,
)
from nox.audit.task import Finding, Signature, TaskAudit, audit_task, task_id_for

__all__ = [
    "AuditCheckFailed",
    "AuditInputError",
    "CollateralSet",
    "CollateralSource",
    "CollateralUnavailable",
    "Finding",
    "NodeVerdict",
    "Registration",
    "Signature",
    "TaskAudit",
    "TaskNotFound",
    "all_active_ok",
    "audit_registrations",
    "audit_registry",
    "audit_task",
    "check_registration",
    "fetch_collateral",
    "read_registrations",
    "task_id_for",
]
