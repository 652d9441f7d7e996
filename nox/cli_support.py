"""Helpers the services use to add their commands to `noxctl`."""

from __future__ import annotations

import argparse

SubParsers = argparse._SubParsersAction  # argparse exposes no public name for this type


def serve_commands(
    subparsers: SubParsers[argparse.ArgumentParser],
) -> SubParsers[argparse.ArgumentParser]:
    """The `noxctl serve SERVICE` sub-command group, created by whichever service adds first."""
    serve = subparsers.choices.get("serve")
    if serve is None:
        serve = subparsers.add_parser("serve", help="run one Nox service")
        services = serve.add_subparsers(dest="service", metavar="SERVICE")
        services.required = True
        return services
    return next(a for a in serve._actions if isinstance(a, argparse._SubParsersAction))
