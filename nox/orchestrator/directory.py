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
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception

from nox.chain.blocks import batch_block_headers
from nox.errors import InvalidArgument
from nox.rpc.logging import module_logger

# Block hashes kept at most (entries past their time are dropped when this is reached).
_CACHE_LIMIT = 4096
_log = module_logger("nox.orchestrator")


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

    def prefetch(self, numbers: Iterable[int]) -> None:
        """Read the hashes of several blocks at once, ahead of `block_hash` (best effort)."""
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
    """`CanonicalChain` over a web3 connection (blocking; one short call per check).

    A block's hash is remembered for `cache_seconds` (monotonic clock): every task of one
    block is checked at admission and again before storing, and an `eth_getBlock` per check
    was 40% of the orchestrator's CPU under load (web3's request path, on the event loop).
    A reorganization is therefore noticed at most `cache_seconds` late; an answer of "no
    such block yet" is never cached. 0 disables the cache. On a chain with short blocks
    nearly every task is a block of its own: `prefetch` reads the blocks of many tasks in one
    JSON-RPC batch (0.13 ms of CPU a block against 1.4 ms for a `get_block`), which the
    scheduler does for each pull of messages and for the tasks it holds.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        cache_seconds: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise InvalidArgument("cache_seconds must not be negative")
        self._w3 = w3
        self._ttl = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[int, tuple[float, bytes]] = {}

    def block_hash(self, number: int) -> bytes | None:
        now = self._monotonic()
        hit = self._cache.get(number)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            value = bytes(self._w3.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None
        self._remember(number, value, now)
        return value

    def prefetch(self, numbers: Iterable[int]) -> None:
        now = self._monotonic()
        wanted = sorted(
            {n for n in numbers if (hit := self._cache.get(n)) is None or now - hit[0] >= self._ttl}
        )
        if self._ttl <= 0 or not wanted:
            return
        try:
            headers = batch_block_headers(self._w3, wanted)
        except (OSError, Web3Exception, ValueError, KeyError, TypeError) as err:
            _log.debug("block_prefetch_failed", error=type(err).__name__)
            return
        for number, header in (headers or {}).items():
            if header is not None:  # not mined yet: left to block_hash
                self._remember(number, header[0], now)

    def _remember(self, number: int, value: bytes, now: float) -> None:
        if self._ttl > 0:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache = {n: e for n, e in self._cache.items() if now - e[0] < self._ttl}
            self._cache[number] = (now, value)
