"""`noxctl`: the command line of the Nox network (serve services, devnet, registration, audit)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nox import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noxctl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"noxctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    devnet = sub.add_parser("devnet", help="run the whole network on this machine")
    devnet.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: run)"
    )
    devnet.set_defaults(func=_devnet)
    from attestation.cli import register_commands as register_attest_commands

    register_attest_commands(sub)
    from nox.chain.cli import register_commands as register_chain_commands

    register_chain_commands(sub)
    from nox.kms.cli import register_commands as register_kms_commands

    register_kms_commands(sub)
    from nox.kms.server import register_commands as register_kms_server_commands

    register_kms_server_commands(sub)
    from nox.gateway.server import register_commands as register_gateway_commands

    register_gateway_commands(sub)
    from nox.runner.server import register_commands as register_runner_commands

    register_runner_commands(sub)
    from nox.sdk.cli import register_commands as register_sdk_commands

    register_sdk_commands(sub)
    from nox.orchestrator.cli import register_commands as register_orchestrator_commands

    register_orchestrator_commands(sub)
    from nox.audit.cli import register_commands as register_audit_commands

    register_audit_commands(sub)
    return parser


def _devnet(args: argparse.Namespace) -> int:
    from nox.devnet import run_devnet

    return run_devnet(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
