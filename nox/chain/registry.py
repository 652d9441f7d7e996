"""RegistryView: what a relying party (orchestrator, gateway, KMS) trusts about a peer.

It caches NoxRegistry state, refreshed from the registry's events, and combines it with
off-chain verification of the raw quote carried in the `NodeRegistered` event: the DCAP chain
is never verified on-chain, so a node whose quote does not verify (through the injected
`verifier`) counts as unregistered. Revocations, workload disallowance and expiry are applied
at the time given by the caller (`now`), so they take effect as soon as the view refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.logs import DISCARD

from attestation import AttestationError
from nox.chain.contracts import Address, NodeRecord, RegistryClient, to_bytes20
from nox.chain.exceptions import (
    AttestationFailed,
    NodeNotAuthorized,
    NodeRevoked,
    RegistrationExpired,
    RoleMismatch,
    SignerNotRegistered,
    WorkloadNotAllowed,
)
from nox.crypto.hashing import keccak256
from nox.errors import NoxError

#: `verifier(quote, now)` raises (an AttestationError or a NoxError) when the quote's DCAP
#: chain does not verify at `now`, e.g. a closure over `attestation.verify_quote`. It may
#: return the time until which its verdict holds (collateral expiry, end of a TCB grace
#: period): the view then re-verifies from that time on, whatever `verify_ttl` says.
QuoteVerifier = Callable[[bytes, int], int | None]
#: `on_quote(quote)`: told of every quote a `NodeRegistered` event carries, so the
#: collateral of a new peer's platform is fetched as the peer appears (never raises).
QuoteHook = Callable[[bytes], None]


@dataclass(frozen=True)
class Node(NodeRecord):
    """A registry entry plus the raw quote it registered with."""

    quote: bytes = b""


_EVENTS = ("NodeRegistered", "NodeRevoked", "WorkloadAllowed", "WorkloadDisallowed")


class RegistryView:
    """Cached registry state for relying parties; see the module docstring."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        verifier: QuoteVerifier,
        from_block: int = 0,
        refresh_interval: float = 5.0,
        verify_ttl: int = 3600,
        monotonic: Callable[[], float] = time.monotonic,
        on_quote: QuoteHook | None = None,
    ) -> None:
        self._client = client
        self._verifier = verifier
        self._on_quote = on_quote
        self._next_block = from_block
        self._refresh_interval = refresh_interval
        self._verify_ttl = verify_ttl
        self._monotonic = monotonic
        self._last_refresh: float | None = None
        self._nodes: dict[bytes, Node] = {}
        self._allowed: dict[tuple[int, bytes], bool] = {}
        # quote hash -> (time of its last good verification, time its verdict ends or None)
        self._verified: dict[bytes, tuple[int, int | None]] = {}

    # ------------------------------------------------------------------ refresh

    def refresh(self) -> None:
        """Apply the registry events since the last refresh."""
        w3 = self._client.backend.w3
        head = int(w3.eth.block_number)
        if head >= self._next_block:
            logs = w3.eth.get_logs(
                {
                    "address": Web3.to_checksum_address(self._client.address),
                    "fromBlock": self._next_block,
                    "toBlock": head,
                }
            )
            touched: set[bytes] = set()
            for name in _EVENTS:
                event = getattr(self._client.contract.events, name)()
                for entry in event.process_receipt({"logs": logs}, errors=DISCARD):
                    self._apply(name, entry.args, touched)
            for address in touched:
                self._reload(address)
            self._next_block = head + 1
        self._last_refresh = self._monotonic()

    def _apply(self, name: str, a: Mapping[str, Any], touched: set[bytes]) -> None:
        if name == "NodeRegistered":
            address = to_bytes20(a["enclave"])
            record = self._client.node(address)
            if record is not None:
                self._nodes[address] = Node(**record.__dict__, quote=bytes(a["quote"]))
                if self._on_quote is not None:
                    self._on_quote(bytes(a["quote"]))
                # older events of the same node carry older quotes: keep the one on-chain
                if keccak256(bytes(a["quote"])) != record.quote_hash:
                    touched.add(address)
        elif name == "NodeRevoked":
            touched.add(to_bytes20(a["enclave"]))
        else:
            key = (int(a["role"]), bytes(a["workloadId"]))
            self._allowed[key] = name == "WorkloadAllowed"

    def _reload(self, address: bytes) -> None:
        record = self._client.node(address)
        old = self._nodes.get(address)
        if record is None:
            self._nodes.pop(address, None)
            return
        quote = old.quote if old is not None and keccak256(old.quote) == record.quote_hash else b""
        self._nodes[address] = Node(**record.__dict__, quote=quote)

    def _maybe_refresh(self, *, force: bool = False) -> None:
        if (
            force
            or self._last_refresh is None
            or self._monotonic() - self._last_refresh >= self._refresh_interval
        ):
            self.refresh()

    # ------------------------------------------------------------------ queries

    def node(self, address: Address) -> Node | None:
        """The on-chain record (whatever its status), or None if never registered."""
        self._maybe_refresh()
        return self._nodes.get(to_bytes20(address))

    def require(self, address: Address, role: int, now: int) -> Node:
        """Return the node if it is an active, attested node of `role` at `now`; otherwise
        raise NodeNotAuthorized whose reason names the failure."""
        node = self._registered(address, role)
        if now >= node.expires_at:
            raise RegistrationExpired("node registration expired")
        self._require_allowed_and_attested(node, now)
        return node

    def require_producer(self, address: Address, role: int, now: int) -> Node:
        """Like `require`, but an expired registration is accepted: the node was an attested
        `role` once and was never revoked, so what it produced then (a handle binding)
        stays valid. Its quote is verified as of its last valid moment when expired.
        Raises NodeNotAuthorized (SIGNER_NOT_REGISTERED, ROLE_MISMATCH, REVOKED,
        WORKLOAD_NOT_ALLOWED, ATTESTATION_FAILED)."""
        node = self._registered(address, role)
        last_valid = min(now, max(node.registered_at, node.expires_at - 1))
        self._require_allowed_and_attested(node, last_valid)
        return node

    def _registered(self, address: Address, role: int) -> Node:
        """The node's record if it is registered in `role` and not revoked (expiry aside)."""
        key = to_bytes20(address)
        self._maybe_refresh()
        node = self._nodes.get(key)
        if node is None:
            # a peer that registered since the last refresh should not wait for the next one
            self._maybe_refresh(force=self._last_refresh is None or self._stale(1.0))
            node = self._nodes.get(key)
        if node is None:
            raise SignerNotRegistered("node is not registered")
        if node.role != role:
            raise RoleMismatch(f"node has role {node.role}, not {role}")
        if node.revoked:
            raise NodeRevoked("node was revoked")
        return node

    def _require_allowed_and_attested(self, node: Node, at: int) -> None:
        if not self._allowed.get((node.role, node.workload_id), False):
            raise WorkloadNotAllowed("node's workload is not allowed")
        self._require_attested(node, at)

    def is_authorized(self, address: Address, role: int, now: int) -> bool:
        """Convenience for listings; checks that gate work must call `require`."""
        try:
            self.require(address, role, now)
        except NodeNotAuthorized:
            return False
        return True

    def active(self, role: int, now: int) -> list[Node]:
        """Every active, attested node of `role` at `now`."""
        self._maybe_refresh()
        return [n for n in self._nodes.values() if self.is_authorized(n.address, role, now)]

    def _stale(self, seconds: float) -> bool:
        return self._last_refresh is None or self._monotonic() - self._last_refresh >= seconds

    def _require_attested(self, node: Node, now: int) -> None:
        cached = self._verified.get(node.quote_hash)
        if cached is not None:
            last, until = cached
            if now - last < self._verify_ttl and (until is None or now < until):
                return
        if not node.quote:
            raise AttestationFailed("node's quote is unavailable")
        try:
            until = self._verifier(node.quote, now)
        except (AttestationError, NoxError) as exc:
            raise AttestationFailed(f"node's quote does not verify: {type(exc).__name__}") from None
        self._verified[node.quote_hash] = (now, until)
