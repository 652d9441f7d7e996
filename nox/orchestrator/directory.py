"""What the orchestrator needs from the chain, as small protocols.

- `NodeDirectory.require(address, role, now)` raises PermissionDenied unless `address` is an
  active (registered, attested, unexpired, unrevoked) node of `role`;
  `NodeDirectory.active(role, now)` lists them. `nox.chain.registry.RegistryView` is one.
- `CanonicalChain.block_hash(number)` is the hash of the canonical block at `number` (None
  when the chain is not there yet): tasks of a transaction whose block was reorganized away
  are withdrawn instead of executed or stored.

Both may block (web3, an in-process EVM that is not thread-safe): `Serialized` puts one lock
around them; the orchestrator calls them from its event loop only through short calls.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from web3 import Web3
from web3.exceptions import BlockNotFound


class ActiveNode(Protocol):
    """A registry entry, as far as the orchestrator reads it."""

    @property
    def address(self) -> bytes: ...


class NodeDirectory(Protocol):
    """Who is registered, in which role (see the module docstring)."""

    def require(self, address: bytes, role: int, now: int) -> object:
        """Raise (PermissionDenied) unless `address` is an active node of `role` at `now`."""
        ...

    def active(self, role: int, now: int) -> Sequence[ActiveNode]:
        """Every active, attested node of `role` at `now`."""
        ...


class CanonicalChain(Protocol):
    """The canonical chain's block hashes (to detect orphaned transactions)."""

    def block_hash(self, number: int) -> bytes | None:
        """Hash of the canonical block `number`, or None if the chain is not that long."""
        ...


class Serialized:
    """One lock around a directory (and optionally a chain view) that is not thread-safe."""

    def __init__(self, directory: NodeDirectory) -> None:
        self._directory = directory
        self._lock = threading.Lock()

    def require(self, address: bytes, role: int, now: int) -> object:
        with self._lock:
            return self._directory.require(address, role, now)

    def active(self, role: int, now: int) -> Sequence[ActiveNode]:
        with self._lock:
            return list(self._directory.active(role, now))


class Web3CanonicalChain:
    """`CanonicalChain` over a web3 connection (blocking; one short call per check)."""

    def __init__(self, w3: Web3) -> None:
        self._w3 = w3

    def block_hash(self, number: int) -> bytes | None:
        try:
            return bytes(self._w3.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None
