"""`noxctl audit`: the auditor's commands (docs/audit.md).

    noxctl audit registry --rpc URL --registry 0x.. [--collateral FILE ... | --pccs URL]
        [--root DER ...] [--at T] [--json]
    noxctl audit task TASK_ID --rpc URL --registry 0x.. (--store DB_URL | --evidence FILE)
        [same attestation options] [--json]
    noxctl audit store --store DB_URL --rpc URL --registry 0x.. [same attestation options]
        [--json]

Exit status: 0 when every active node verifies (`registry`) / every check of the task's
evidence passes (`task`) / every stored row matches its producer binding (`store`); 1 when
one does not (expired and revoked nodes are listed by
`registry` but do not count); 2 when the audit could not run (unreachable chain,
unreadable files, unknown task, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestation import Collateral, Policy, intel_sgx_root_ca
from attestation.dual import DualVerifier, load_dcap_qvl
from attestation.exceptions import AttestationError
from attestation.fetch import INTEL_PCS_URL, CollateralFetcher
from attestation.tcb import NON_TERMINAL_STATUSES
from nox.audit.collateral import CollateralSet, CollateralSource, fetch_collateral
from nox.audit.exceptions import AuditInputError, TaskNotFound
from nox.audit.registrations import read_registrations
from nox.audit.registry import NodeVerdict, all_active_ok, audit_registrations
from nox.audit.report import render_json, render_table, render_task
from nox.audit.task import audit_task
from nox.chain.backend import RpcChain
from nox.chain.contracts import RegistryClient, to_bytes20, to_checksum
from nox.crypto.eip712 import Domain
from nox.errors import NoxError

if TYPE_CHECKING:
    from attestation.providers.simulated import SimulatedTdx

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def register_commands(subparsers: Any) -> None:
    """Add the `audit` command (`registry`, `task`) to noxctl."""
    audit = subparsers.add_parser("audit", help="re-verify registrations and task evidence")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    reg = sub.add_parser(
        "registry", help="re-verify every registered node's quote from the chain's events"
    )
    _chain_args(reg)
    _attestation_args(reg)
    reg.add_argument("--json", action="store_true", help="print one JSON object")
    reg.set_defaults(func=_cmd_registry)

    task = sub.add_parser("task", help="who executed a task, and the evidence backing it")
    task.add_argument("task_id", help="32-byte task id (hex)")
    _chain_args(task)
    evidence = task.add_mutually_exclusive_group(required=True)
    evidence.add_argument(
        "--store", help="gateway store database URL (read only; e.g. sqlite:///gw.sqlite3)"
    )
    evidence.add_argument(
        "--evidence", type=Path, help="the task's evidence bytes (a serialized SignedEnvelope)"
    )
    task.add_argument(
        "--no-chain-check",
        action="store_true",
        help="do not look the transaction and its Operation events up on the chain",
    )
    _attestation_args(task)
    task.add_argument("--json", action="store_true", help="print one JSON object")
    task.set_defaults(func=_cmd_task)

    store = sub.add_parser(
        "store", help="check every row of a gateway store against its producer binding"
    )
    store.add_argument("--store", required=True, help="gateway store database URL (read only)")
    _chain_args(store)
    _attestation_args(store)
    store.add_argument("--json", action="store_true", help="print one JSON object")
    store.set_defaults(func=_cmd_store)


def _chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rpc", default=os.environ.get("NOX_CHAIN_RPC"), help="JSON-RPC URL (env NOX_CHAIN_RPC)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--registry", help="NoxRegistry address (0x..)")
    where.add_argument(
        "--deployment",
        type=Path,
        default=None,
        help="deployment JSON from `noxctl chain deploy` (or env NOX_DEPLOYMENT)",
    )
    p.add_argument("--from-block", type=int, default=0, help="first block to read events from")


def _attestation_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--collateral",
        type=Path,
        action="append",
        help="collateral JSON (dcap-qvl form), matched to quotes by FMSPC; repeatable",
    )
    source.add_argument(
        "--pccs", help=f"PCCS / PCS base URL to fetch collateral from (default {INTEL_PCS_URL})"
    )
    source.add_argument(
        "--sim-dir",
        type=Path,
        help="a simulated-TDX devnet's dev PKI folder: trust its dev root and use its "
        "collateral (devnets only; such quotes prove no TEE)",
    )
    p.add_argument(
        "--root",
        type=Path,
        action="append",
        help="trusted root CA (DER); repeatable; default Intel SGX Root CA only",
    )
    p.add_argument("--at", type=int, default=None, help="audit time (Unix seconds; default now)")
    p.add_argument(
        "--tcb-status",
        action="append",
        help="accepted TCB status (repeatable; default every non-terminal status)",
    )
    p.add_argument("--single", action="store_true", help="do not cross-check with dcap-qvl")


@dataclass(frozen=True)
class _Registry:
    backend: RpcChain
    address: str
    now: int
    verdicts: list[NodeVerdict]


def _registry_address(args: argparse.Namespace, backend: RpcChain) -> str:
    if args.registry:
        return to_checksum(args.registry)
    env = os.environ.get("NOX_DEPLOYMENT")
    path = args.deployment or (Path(env) if env else None)
    if path is None:
        raise AuditInputError("no registry: pass --registry, --deployment or set NOX_DEPLOYMENT")
    from nox.chain.deploy import Deployment

    deployment = Deployment.from_json(json.loads(Path(path).read_text()))
    if deployment.chain_id != backend.chain_id:
        raise AuditInputError(
            f"deployment is for chain {deployment.chain_id}, the endpoint serves {backend.chain_id}"
        )
    return to_checksum(deployment.registry)


def _collateral_source(args: argparse.Namespace, quotes: list[bytes], now: int) -> CollateralSource:
    if args.sim_dir is not None:
        return CollateralSet([_simulated(args).collateral(now=now)])
    if args.collateral:
        return CollateralSet(Collateral.from_json(p.read_bytes()) for p in args.collateral)
    base = args.pccs or INTEL_PCS_URL

    def factory() -> CollateralFetcher:
        return CollateralFetcher(base)

    fetch: Callable[[], CollateralFetcher] = factory
    return fetch_collateral(quotes, fetch)


def _simulated(args: argparse.Namespace) -> SimulatedTdx:
    from attestation.providers.simulated import SimulatedTdx

    return SimulatedTdx.load(args.sim_dir)


def _policy(args: argparse.Namespace) -> Policy:
    if not args.tcb_status:
        return Policy.any_tcb_status()
    unknown = set(args.tcb_status) - set(NON_TERMINAL_STATUSES)
    if unknown:
        raise AuditInputError(f"unknown TCB status: {', '.join(sorted(unknown))}")
    return Policy(allowed_statuses=frozenset(args.tcb_status))


def _audit_registry(args: argparse.Namespace) -> _Registry:
    if not args.rpc:
        raise AuditInputError("no chain: pass --rpc or set NOX_CHAIN_RPC")
    backend = RpcChain(args.rpc)
    address = _registry_address(args, backend)
    roots = [p.read_bytes() for p in args.root] if args.root else []
    if args.sim_dir is not None:
        roots.append(_simulated(args).root_der)
    roots = roots or [intel_sgx_root_ca()]
    policy = _policy(args)
    now = int(time.time()) if args.at is None else args.at
    registrations = read_registrations(RegistryClient(backend, address), from_block=args.from_block)
    collateral_for = _collateral_source(args, [r.quote for r in registrations if r.quote], now)
    verifier = DualVerifier(roots, policy=policy, dcap_qvl=None if args.single else load_dcap_qvl())
    verdicts = audit_registrations(
        registrations,
        chain_id=backend.chain_id,
        registry=address,
        trusted_roots=roots,
        collateral_for=collateral_for,
        now=now,
        policy=policy,
        verifier=verifier,
    )
    return _Registry(backend, address, now, verdicts)


_ERRORS = (NoxError, AttestationError, OSError, ValueError)


def _cmd_registry(args: argparse.Namespace) -> int:
    try:
        reg = _audit_registry(args)
    except _ERRORS as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        report = render_json(
            reg.verdicts, chain_id=reg.backend.chain_id, registry=reg.address, checked_at=reg.now
        )
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"NoxRegistry {reg.address} on chain {reg.backend.chain_id}, audited at {reg.now}")
        print(render_table(reg.verdicts))
    return EXIT_OK if all_active_ok(reg.verdicts) else EXIT_FAILED


def _task_id(text: str) -> bytes:
    try:
        task_id = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise AuditInputError("the task id must be hex") from None
    if len(task_id) != 32:
        raise AuditInputError("the task id must be 32 bytes")
    return task_id


def _load_evidence(args: argparse.Namespace, task_id: bytes) -> tuple[bytes, Any]:
    if args.evidence is not None:
        return Path(args.evidence).read_bytes(), None
    from nox.gateway.store import HandleStore, StoreSettings

    store = HandleStore.open(StoreSettings(url=args.store, migrate=False, pool_size=1))
    try:
        info = store.task(task_id)
    finally:
        store.close()
    if info is None:
        raise TaskNotFound(f"the gateway store has no task 0x{task_id.hex()}")
    if info.evidence is None:
        raise TaskNotFound(f"the gateway store kept no evidence for task 0x{task_id.hex()}")
    return info.evidence, info


def _cmd_task(args: argparse.Namespace) -> int:
    try:
        task_id = _task_id(args.task_id)
        evidence, stored = _load_evidence(args, task_id)
        reg = _audit_registry(args)
        audit = audit_task(
            task_id,
            evidence,
            domain=Domain(reg.backend.chain_id, to_bytes20(reg.address)),
            nodes={v.address: v for v in reg.verdicts},
            stored=stored,
            chain=None if args.no_chain_check else reg.backend,
        )
    except _ERRORS as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(audit.to_json(), indent=2, sort_keys=True))
    else:
        print(render_task(audit))
    return EXIT_OK if audit.ok else EXIT_FAILED


def _cmd_store(args: argparse.Namespace) -> int:
    from nox.audit.store import audit_rows, render_rows
    from nox.gateway.store import HandleStore, StoreSettings

    try:
        reg = _audit_registry(args)
        domain = Domain(reg.backend.chain_id, to_bytes20(reg.address))
        nodes = {v.address: v for v in reg.verdicts}
        store = HandleStore.open(StoreSettings(url=args.store, migrate=False, pool_size=1))
        verdicts = []
        try:
            after = b""
            while page := store.scan(after=after):
                verdicts += audit_rows(page, domain=domain, nodes=nodes, now=reg.now)
                after = page[-1].record.handle
        finally:
            store.close()
    except _ERRORS as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        failing = [v.to_json() for v in verdicts if not v.ok]
        print(json.dumps({"rows": len(verdicts), "failing": failing}, indent=2, sort_keys=True))
    else:
        print(render_rows(verdicts))
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED
