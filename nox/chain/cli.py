"""`noxctl` commands of the chain layer: deploy, runner registration, registry views, governance.

`noxctl runner register` is for runners operated by hand (an enclave key file registered
from outside the process); every service registers its in-memory enclave key itself.

These act on a chain reached over JSON-RPC (`--rpc`, or NOX_CHAIN_RPC): an embedded EVM lives
inside one process, so state shared between CLI invocations needs a node such as anvil
(`node_modules/.bin/anvil`). Contract addresses come from a deployment file written by
`noxctl chain deploy` (`--deployment`, or NOX_DEPLOYMENT). Private keys are read from files
(`--key-file`, hex), never from the command line.

    noxctl chain deploy --rpc URL --key-file owner.key --out deployment.json
    noxctl runner register --rpc URL --deployment d.json --key-file operator.key \
        --enclave-key-file enclave.key --endpoint https://me:7443 --sim-dir ./dev-tdx
    noxctl registry list --rpc URL --deployment d.json [--role runner]
    noxctl registry show ADDRESS --rpc URL --deployment d.json
    noxctl governance allow-workload --role runner --workload-id 0x.. --key-file owner.key ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from nox.chain.backend import RpcChain
from nox.chain.contracts import NodeRecord, RegistryClient, to_checksum
from nox.chain.deploy import Deployment, deploy_all
from nox.chain.exceptions import ContractReverted
from nox.errors import InvalidArgument, NoxError

ROLES = {"orchestrator": 1, "runner": 2, "gateway": 3, "kms": 4, "ingestor": 5}
ROLE_NAMES = {v: k for k, v in ROLES.items()}


def register_commands(subparsers: Any) -> None:
    """Add the `chain`, `runner`, `registry` and `governance` commands to noxctl."""
    chain = subparsers.add_parser("chain", help="deploy the Nox contracts to a JSON-RPC chain")
    chain_sub = chain.add_subparsers(dest="chain_command", metavar="COMMAND", required=True)
    deploy = chain_sub.add_parser("deploy", help="deploy NoxRegistry, ACL and NoxCompute")
    _rpc_args(deploy, deployment=False)
    _key_arg(deploy)
    deploy.add_argument("--token", action="store_true", help="also deploy the sample token")
    deploy.add_argument("--out", type=Path, help="write the deployment JSON here")
    deploy.set_defaults(func=_cmd_deploy)

    runner = subparsers.add_parser("runner", help="runner node operations")
    runner_sub = runner.add_subparsers(dest="runner_command", metavar="COMMAND", required=True)
    reg = runner_sub.add_parser(
        "register",
        help="attest and register a runner operated by hand (services register themselves)",
        description="Register a runner whose enclave key is kept in a file, from outside its "
        "process: for runners operated by hand only. Every service (runner, orchestrator, "
        "ingestor, gateway, KMS node) registers its in-memory enclave key itself at start.",
    )
    _rpc_args(reg)
    _key_arg(reg, help_text="operator key file (hex); the operator pays gas")
    reg.add_argument(
        "--enclave-key-file",
        type=Path,
        required=True,
        help="enclave key file (hex, mode 0600); created if missing",
    )
    reg.add_argument("--endpoint", required=True, help="URI peers reach this node at")
    reg.add_argument("--role", choices=["runner"], default="runner", help="runners only")
    reg.add_argument("--provider", choices=["simulated", "configfs"], default="simulated")
    reg.add_argument("--sim-dir", type=Path, help="simulated TDX dev PKI folder (created if new)")
    reg.add_argument("--permit-ttl", type=int, default=600, help="seconds the permit is valid")
    reg.set_defaults(func=_cmd_register)

    registry = subparsers.add_parser("registry", help="read NoxRegistry")
    registry_sub = registry.add_subparsers(
        dest="registry_command", metavar="COMMAND", required=True
    )
    listing = registry_sub.add_parser("list", help="active nodes (on-chain state)")
    _rpc_args(listing)
    listing.add_argument(
        "--role",
        choices=sorted(ROLES),
        action="append",
        help="only these roles (repeatable; default: all)",
    )
    listing.set_defaults(func=_cmd_list)
    show = registry_sub.add_parser("show", help="one node's registration")
    _rpc_args(show)
    show.add_argument("address")
    show.set_defaults(func=_cmd_show)

    gov = subparsers.add_parser("governance", help="NoxRegistry governance (owner key)")
    gov_sub = gov.add_subparsers(dest="governance_command", metavar="COMMAND", required=True)
    for name, helptext in [
        ("allow-workload", "allowlist a workload id for a role"),
        ("disallow-workload", "remove a workload id (effective at once)"),
    ]:
        p = gov_sub.add_parser(name, help=helptext)
        _rpc_args(p)
        _key_arg(p)
        p.add_argument("--role", choices=sorted(ROLES), required=True)
        p.add_argument("--workload-id", required=True, help="32-byte hex")
        p.set_defaults(func=_cmd_workload, allow=name == "allow-workload")
    revoke = gov_sub.add_parser("revoke-enclave", help="revoke an enclave (effective at once)")
    _rpc_args(revoke)
    _key_arg(revoke)
    revoke.add_argument("address")
    revoke.set_defaults(func=_cmd_revoke)
    kms = gov_sub.add_parser("set-kms-keys", help="publish the KMS public key and shares")
    _rpc_args(kms)
    _key_arg(kms)
    kms.add_argument("--public-key", required=True, help="33-byte compressed hex")
    kms.add_argument("--share", action="append", required=True, help="public share (repeat)")
    kms.add_argument("--threshold", type=int, required=True)
    kms.set_defaults(func=_cmd_kms)
    age = gov_sub.add_parser("set-max-attestation-age", help="registration lifetime (seconds)")
    _rpc_args(age)
    _key_arg(age)
    age.add_argument("seconds", type=int)
    age.set_defaults(func=_cmd_max_age)


# ---------------------------------------------------------------------- plumbing


def _rpc_args(p: argparse.ArgumentParser, *, deployment: bool = True) -> None:
    p.add_argument(
        "--rpc", default=os.environ.get("NOX_CHAIN_RPC"), help="JSON-RPC URL (env NOX_CHAIN_RPC)"
    )
    if deployment:
        p.add_argument(
            "--deployment",
            type=Path,
            default=_env_path("NOX_DEPLOYMENT"),
            help="deployment JSON from `noxctl chain deploy` (env NOX_DEPLOYMENT)",
        )


def _key_arg(p: argparse.ArgumentParser, help_text: str = "owner key file (hex)") -> None:
    p.add_argument("--key-file", type=Path, required=True, help=help_text)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _read_key(path: Path) -> LocalAccount:
    try:
        text = path.read_text(encoding="utf-8").strip()
        account: LocalAccount = Account.from_key(text)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(
            f"cannot read a private key from {path}: {type(exc).__name__}"
        ) from None
    return account


def _backend(args: argparse.Namespace) -> RpcChain:
    if not args.rpc:
        raise InvalidArgument("no chain: pass --rpc or set NOX_CHAIN_RPC")
    return RpcChain(args.rpc)


def _registry(args: argparse.Namespace) -> RegistryClient:
    if args.deployment is None:
        raise InvalidArgument("no deployment: pass --deployment or set NOX_DEPLOYMENT")
    deployment = Deployment.from_json(json.loads(Path(args.deployment).read_text()))
    backend = _backend(args)
    if backend.chain_id != deployment.chain_id:
        raise InvalidArgument(
            f"deployment is for chain {deployment.chain_id}, the endpoint serves {backend.chain_id}"
        )
    return RegistryClient(backend, deployment.registry)


def _node_json(node: NodeRecord) -> dict[str, Any]:
    return {
        "address": to_checksum(node.address),
        "role": ROLE_NAMES.get(node.role, str(node.role)),
        "operator": to_checksum(node.operator),
        "workload_id": "0x" + node.workload_id.hex(),
        "quote_hash": "0x" + node.quote_hash.hex(),
        "registered_at": node.registered_at,
        "expires_at": node.expires_at,
        "endpoint": node.endpoint,
        "revoked": node.revoked,
    }


def _print(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        fn(args)
    except ContractReverted as exc:
        print(f"error: the contract rejected the call: {exc.message}", file=sys.stderr)
        return 1
    except NoxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _hex32(text: str) -> bytes:
    data = bytes.fromhex(text.removeprefix("0x"))
    if len(data) != 32:
        raise InvalidArgument("expected 32 bytes of hex")
    return data


# ---------------------------------------------------------------------- commands


def _cmd_deploy(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        owner = _read_key(a.key_file)
        backend = RpcChain(a.rpc, private_keys=[owner.key]) if a.rpc else _backend(a)
        deployment = deploy_all(backend, owner=owner, with_token=a.token)
        if a.out:
            a.out.write_text(json.dumps(deployment.to_json(), indent=2, sort_keys=True) + "\n")
        _print(deployment.to_json())

    return _run(go, args)


def _load_or_create_enclave_key(path: Path) -> LocalAccount:
    if path.exists():
        return _read_key(path)
    account: LocalAccount = Account.create()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(account.key).hex() + "\n")
    return account


def _quote(args: argparse.Namespace, report_data: bytes) -> bytes:
    if args.provider == "configfs":
        from attestation.providers.configfs import ConfigfsTsm

        return ConfigfsTsm().quote(report_data)
    from attestation.providers.simulated import SimulatedTdx

    if args.sim_dir is None:
        raise InvalidArgument("--sim-dir is required with the simulated provider")
    sim_dir = Path(args.sim_dir)
    sim = (
        SimulatedTdx.load(sim_dir)
        if (sim_dir / "meta.json").exists()
        else SimulatedTdx.create(sim_dir)
    )
    return sim.quote(report_data)


def _cmd_register(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        from nox.chain.registrar import ChainRegistrar, SelfRegistration
        from nox.crypto.keys import EnclaveKey

        registry = _registry(a)
        operator = _read_key(a.key_file)
        enclave = _load_or_create_enclave_key(a.enclave_key_file)
        key = EnclaveKey.from_bytes(bytes(enclave.key))
        registrar = ChainRegistrar(
            registry, enclave=key, operator=operator, permit_ttl=a.permit_ttl
        )
        SelfRegistration(
            registrar,
            enclave=key.address,
            role=ROLES[a.role],
            endpoint=a.endpoint,
            quote=lambda report_data: _quote(a, report_data),
            clock=registry.backend.now,
        ).register_now()
        node = registry.node(key.address)
        if node is None:  # pragma: no cover - the transaction above succeeded
            raise NoxError("registration not visible after the transaction")
        _print(_node_json(node))

    return _run(go, args)


def _cmd_list(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        roles = [ROLES[r] for r in (a.role or sorted(ROLES, key=ROLES.__getitem__))]
        nodes = []
        for role in roles:
            for address in registry.active_nodes(role):
                node = registry.node(address)
                if node is not None:
                    nodes.append(_node_json(node))
        _print(nodes)

    return _run(go, args)


def _cmd_show(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        node = registry.node(a.address)
        if node is None:
            raise InvalidArgument(f"{a.address} is not registered")
        data = _node_json(node)
        data["active"] = registry.is_active(a.address)
        _print(data)

    return _run(go, args)


def _cmd_workload(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        owner = _read_key(a.key_file)
        wid = _hex32(a.workload_id)
        if a.allow:
            registry.allow_workload(ROLES[a.role], wid, owner)
        else:
            registry.disallow_workload(ROLES[a.role], wid, owner)
        _print({"role": a.role, "workload_id": "0x" + wid.hex(), "allowed": a.allow})

    return _run(go, args)


def _cmd_revoke(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        registry.revoke_enclave(a.address, _read_key(a.key_file))
        _print({"revoked": to_checksum(a.address)})

    return _run(go, args)


def _cmd_kms(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        shares = [bytes.fromhex(s.removeprefix("0x")) for s in a.share]
        public_key = bytes.fromhex(a.public_key.removeprefix("0x"))
        registry.set_kms_keys(public_key, shares, a.threshold, _read_key(a.key_file))
        keys = registry.kms_keys()
        _print(
            {
                "public_key": "0x" + keys.public_key.hex(),
                "threshold": keys.threshold,
                "public_shares": ["0x" + s.hex() for s in keys.public_shares],
            }
        )

    return _run(go, args)


def _cmd_max_age(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> None:
        registry = _registry(a)
        registry.set_max_attestation_age(a.seconds, _read_key(a.key_file))
        _print({"max_attestation_age": registry.max_attestation_age()})

    return _run(go, args)
