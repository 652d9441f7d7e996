"""`noxctl devnet`: the whole Nox network on one machine, on embedded defaults.

See docs/devnet.md. `Devnet` (nox.devnet.network) brings the services up in one process
around an in-process EVM; `run_devnet(args)` is the command; `run_demo` (nox.devnet.demo)
drives the confidential token scenario through the SDK and checks every value.
"""

from __future__ import annotations

from nox.devnet.cli import run_devnet

__all__ = ["run_devnet"]
