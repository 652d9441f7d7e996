"""`noxctl`: the command line of the Nox network (serve services, devnet, registration, audit)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nox import __version__

# Modules that add their commands with `register_commands(subparsers)`, in `--help` order.
# They are imported only when the parser is built, so `import nox.cli` stays cheap.
COMMAND_MODULES = (
    "nox.chain.cli",  # chain deploy, runner register, registry list|show, governance
    "nox.gateway.server",  # serve gateway
    "nox.kms.server",  # serve kms
    "nox.runner.server",  # serve runner
    "nox.orchestrator.cli",  # serve orchestrator, serve ingestor
    "nox.kms.cli",  # kms keygen | new-kek | check-share
    "nox.sdk.cli",  # envelope new-key | sign | verify
    "nox.audit.cli",  # audit registry | task
    "attestation.cli",  # attest verify | parse
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noxctl", description="The command line of the Nox confidential-computation network."
    )
    parser.add_argument("--version", action="version", version=f"noxctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    devnet = sub.add_parser("devnet", help="run the whole network on this machine")
    from nox.devnet.cli import add_arguments as add_devnet_arguments

    add_devnet_arguments(devnet)
    devnet.set_defaults(func=_devnet)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_commands(sub)
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
