"""Rate limiting of the gateway's public calls and request size limits (issue 6, point 3).

Public (unsigned) methods are open to anyone, so each client gets a token bucket: `burst`
calls at once, refilled at `rate` calls per second. The client is its network address
without the port (a client opening new connections gets no new bucket). The clock is
injected so tests pin it; buckets of idle clients are forgotten (least recently used first)
beyond `max_clients`, which bounds memory whatever the number of addresses.

Signed methods are not rate limited here: their signers are registered enclaves, and each
envelope is checked before any work (a flood of bad envelopes costs one signature recovery
each). Every method has a size limit on its request, below gRPC's 16 MiB message limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from nox.errors import InvalidArgument, ResourceExhausted
from nox.gateway.exceptions import RateLimited


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's parameters: `burst` calls at once, `rate` calls per second after."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise InvalidArgument("a rate limit needs rate > 0 and burst >= 1")


def client_key(peer: str) -> str:
    """The bucket key of a gRPC peer string: its address without the port.

    `ipv4:1.2.3.4:5678` -> `ipv4:1.2.3.4`; `ipv6:[::1]:5678` -> `ipv6:[::1]`; anything else
    (unix sockets, in-process) is its own key.
    """
    scheme, sep, rest = peer.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return peer
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        return peer
    return f"{scheme}:{host}"


class RateLimiter:
    """Token buckets per client (see the module docstring). Not thread-safe: use it from the
    event loop only (the servicer does)."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        if max_clients < 1:
            raise InvalidArgument("max_clients must be positive")
        self._limit = limit
        self._clock = clock
        self._max_clients = max_clients
        # client -> (tokens, time of last update)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str, cost: float = 1.0) -> None:
        """Take `cost` tokens from `client`'s bucket; raise RateLimited when it has fewer."""
        now = self._clock()
        limit = self._limit
        tokens, last = self._buckets.pop(client, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(0.0, now - last) * limit.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[client] = (tokens, now)  # most recently used last
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        if not allowed:
            wait = (cost - tokens) / limit.rate
            raise RateLimited(
                "too many calls from this client; retry later",
                metadata={"retry_after_seconds": f"{wait:.3f}"},
            )


def check_size(message: Message, limit: int, what: str) -> None:
    """Raise RESOURCE_EXHAUSTED when `message` serializes to more than `limit` bytes."""
    size = message.ByteSize()
    if size > limit:
        raise ResourceExhausted(
            f"{what} is {size} bytes, limit {limit}", metadata={"limit": str(limit)}
        )
