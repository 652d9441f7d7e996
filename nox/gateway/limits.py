"""Rate limiting of the gateway's public calls and request size limits (issues 6 and 14).

Public (unsigned) methods are open to anyone, so each client gets a token bucket: `burst`
calls at once, refilled at `rate` calls per second; EncryptInput, the one public call that
stores something, also takes from a second bucket counted in request bytes (the input
quota). The client is its network address without the port, and an IPv6 client its /64
(one customer's allocation: a host picks any address in it at no cost), so neither new
connections nor new addresses of one network give new buckets. The clock is injected so
tests pin it; buckets of idle clients are forgotten (least recently used first) beyond
`max_clients`, which bounds memory whatever the number of addresses.

Signed methods are rate limited per verified signer where envelopes are verified (see
`nox.crypto.replay.SignerLimits`). Every method has a size limit on its raw request bytes,
checked before parsing (`request_limits`, applied by `nox.rpc`): public methods far below
the signed ones, and the gRPC transport cap is the largest of them.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from nox.errors import InvalidArgument, ResourceExhausted
from nox.gateway.context import GatewayLimits
from nox.gateway.exceptions import RateLimited
from nox.rpc import RequestLimits

INPUT_ROW_COST = 256
"""Bytes an input costs its client's input quota beyond its request's size (the stored row)."""

ENVELOPE_OVERHEAD = 1024
"""Bytes a signed method's request adds around its envelope (field tags and lengths)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket's parameters: `burst` calls at once, `rate` calls per second after."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise InvalidArgument("a rate limit needs rate > 0 and burst >= 1")


def request_limits(limits: GatewayLimits) -> RequestLimits:
    """The raw request size limit of each GatewayService method (public ones by default)."""
    return RequestLimits(
        default=limits.max_public_request_bytes,
        methods={
            "GetOperands": limits.max_operands_request_bytes,
            "StoreResults": limits.max_envelope_bytes + ENVELOPE_OVERHEAD,
        },
    )


def client_key(peer: str) -> str:
    """The bucket key of a gRPC peer string: its IPv4 address, or its IPv6 /64, no port.

    `ipv4:1.2.3.4:5678` -> `ipv4:1.2.3.4`; `ipv6:[2001:db8::1]:5678` -> `ipv6:2001:db8::/64`
    (every address of that /64 shares one key); an IPv4-mapped IPv6 address is its IPv4
    address; anything else (unix sockets, in-process) is its own key.
    """
    scheme, sep, rest = peer.partition(":")
    if not sep or scheme not in ("ipv4", "ipv6"):
        return peer
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        return peer
    if scheme == "ipv4":
        return f"ipv4:{host}"
    try:
        address = ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]").split("%")[0])
    except ValueError:
        return peer
    if address.ipv4_mapped is not None:
        return f"ipv4:{address.ipv4_mapped}"
    network = ipaddress.IPv6Network((int(address) >> 64 << 64, 64))
    return f"ipv6:{network}"


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

    def check(self, client: str, cost: float = 1.0, *, what: str = "calls") -> None:
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
                f"too many {what} from this client; retry later",
                metadata={"retry_after_seconds": f"{wait:.3f}", "quota": what},
            )


def check_size(message: Message, limit: int, what: str) -> None:
    """Raise RESOURCE_EXHAUSTED when `message` serializes to more than `limit` bytes."""
    size = message.ByteSize()
    if size > limit:
        raise ResourceExhausted(
            f"{what} is {size} bytes, limit {limit}", metadata={"limit": str(limit)}
        )
