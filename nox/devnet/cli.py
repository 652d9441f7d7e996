"""`noxctl devnet [--demo] [--duration N] [--state-dir DIR]`: the network on this machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from nox.errors import NoxError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The devnet command's options (called by nox.cli)."""
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: run)"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the confidential token scenario, check every value, then stop (exit 0 = right)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".devnet"),
        help="where the devnet keeps its files, regenerated at each start (default: .devnet)",
    )
    parser.add_argument("--runners", type=int, default=2, help="runner agents (default 2)")
    parser.add_argument(
        "--multi-process",
        action="store_true",
        help="each service its own `noxctl serve` process, on anvil (as production runs)",
    )
    parser.add_argument(
        "--store-url",
        default=None,
        help="multi-process: the gateway's database URL, e.g. postgresql+psycopg://… "
        "(default: SQLite in the state directory)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        help="services' log level, on stderr (default warning; info shows every task)",
    )


def _say(message: str) -> None:
    print(f"devnet: {message}", flush=True)


def summary_lines(info: dict[str, Any]) -> list[str]:
    """The human summary of `Devnet.to_json()`."""
    c = info["contracts"]
    lines = [
        "ready",
        f"  chain id      {info['chain_id']}  ({info['chain']})",
        *([f"  JSON-RPC      {info['chain_rpc_url']}"] if info["chain_rpc_url"] else []),
        f"  NoxRegistry   {c['registry']}",
        f"  ACL           {c['acl']}",
        f"  NoxCompute    {c['compute']}",
        f"  Token         {c['token']}",
        f"  NATS          {info['nats']}",
        f"  gateway       {info['gateway']}",
    ]
    for e in info["endpoints"]:
        lines.append(f"  {e['name']:<13} {e['target']:<22} enclave {e['enclave_address']}")
    lines += [
        f"  KMS key       {info['kms_public_key']} ({info['kms_threshold']}-of-{len(info['kms'])})",
        f"  workload id   {info['workload_id']} (allowlisted for every role)",
        f"  governance    {info['governance']}   operator {info['operator']}",
        f"  services      {', '.join(info['services'])}",
        f"  enclave keys  {info['enclave_keys']}",
        f"  KMS shares    sealed, with their KEKs, in {info['files']['kms_shares']}",
        f"  dev root CA   {info['files']['dev_root_ca']} (trusted by this devnet only)",
        f"  state         {info['state_dir']}/devnet.json",
    ]
    return lines


async def _main(args: argparse.Namespace) -> int:
    from nox.devnet.config import DevnetSettings
    from nox.devnet.network import Devnet
    from nox.devnet.processes import ProcessDevnet

    kind = ProcessDevnet if args.multi_process else Devnet
    settings = DevnetSettings(
        state_dir=args.state_dir, runners=args.runners, store_url=args.store_url
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    _say(f"starting on embedded defaults (state in {settings.state_dir})")
    code = 0
    try:
        async with kind(settings, progress=_say) as net:
            for line in summary_lines(net.to_json()):
                _say(line)
            if args.demo:
                from nox.devnet.demo import run_demo

                code = await run_demo(net, say=_say)
            else:
                _say("running (Ctrl-C stops it)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=args.duration)
            _say("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return code


def run_devnet(args: argparse.Namespace) -> int:
    """Entry point of `noxctl devnet` (nox.cli)."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    for name, value in vars(defaults.parse_args([])).items():
        if not hasattr(args, name):
            setattr(args, name, value)
    from nox.rpc.logging import configure_logging

    configure_logging(json=False, level=args.log_level)
    try:
        code = asyncio.run(_main(args))
    except NoxError as exc:
        print(f"devnet: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    _say("stopped")
    return code
