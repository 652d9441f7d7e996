"""Typed settings of a devnet (what `noxctl devnet` builds on this machine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nox.devnet.exceptions import InvalidDevnetSettings


@dataclass(frozen=True)
class DevnetSettings:
    """The embedded defaults: one process, an in-process EVM, SQLite, a bundled nats-server."""

    state_dir: Path = Path(".devnet")
    """Where the devnet keeps its files: dev TDX PKI, KMS share files and KEKs, SQLite
    databases, the NATS store and `devnet.json` (endpoints and addresses). Regenerated at
    every start: a devnet is throw-away."""
    kms_threshold: int = 2
    kms_nodes: int = 3
    runners: int = 2
    host: str = "127.0.0.1"
    """Interface every gRPC server listens on; each takes a free port."""
    runner_capacity: int = 2
    """Tasks each runner executes at once."""
    store_url: str | None = None
    """The gateway's database (SQLAlchemy URL, e.g. postgresql+psycopg://…) in multi-process
    mode; default a SQLite file in the state directory."""
    ready_timeout: float = 60.0
    """Longest wait for the runners to register and report ready."""

    def __post_init__(self) -> None:
        if not 1 <= self.kms_threshold <= self.kms_nodes:
            raise InvalidDevnetSettings("need 1 <= kms_threshold <= kms_nodes")
        if self.runners < 1 or self.runner_capacity < 1:
            raise InvalidDevnetSettings("need at least one runner with capacity >= 1")
