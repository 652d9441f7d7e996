"""Channels from one service to another, with RA-TLS when the client's setting asks for it.

Every service dials its peers here (`PeerChannel.open`), so the choice between a plain (or
CA-verified) channel and an RA-TLS one is made in one place (`nox.rpc.ratls.dial`).

An RA-TLS channel is pinned to the certificate verified when it was dialled. A peer that
restarts has a new enclave key and a new certificate, so the pinned channel stops completing
handshakes. A stub from `PeerChannel.stub` checks, before a call on a channel that is not
connected, which certificate the peer presents now (one handshake, no request byte); when it
changed, it dials the peer again, which verifies the new certificate against the registry,
and the call goes over the new channel (as a plain channel would reconnect to the restarted
peer). A call that fails UNAVAILABLE also triggers a new dial. A new certificate that does not
verify keeps the dead channel: an impostor at the peer's address looks, to the caller, like a
peer that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nox.errors import NoxError
from nox.rpc.client import ChannelSettings
from nox.rpc.logging import get_logger
from nox.rpc.ratls import AttestedDialer, AttestedPeer, dial, fetch_certificate

__all__ = ["PeerChannel", "is_unavailable", "open_peer"]

# How long a call waits for a pinned channel to connect to the peer whose certificate it was
# just seen to present (then the call goes ahead, and fails UNAVAILABLE if it must).
_READY_SECONDS = 5.0


def is_unavailable(error: BaseException) -> bool:
    """Whether a failed call failed because the peer could not be reached (UNAVAILABLE)."""
    if isinstance(error, grpc.aio.AioRpcError):
        return bool(error.code() == grpc.StatusCode.UNAVAILABLE)
    return isinstance(error, NoxError) and error.code == grpc.StatusCode.UNAVAILABLE


class PeerChannel:
    """The channel to one peer service of `role` at `target` (see the module docstring)."""

    def __init__(
        self,
        target: str,
        settings: ChannelSettings,
        *,
        attested: AttestedDialer | None,
        role: int,
    ) -> None:
        self.target = target
        self._settings = settings
        self._attested = attested
        self._role = role
        self._channel: grpc.aio.Channel | None = None
        self._peer: AttestedPeer | None = None
        self._lock = asyncio.Lock()
        self._log = get_logger("nox.rpc.peers")

    @classmethod
    async def open(
        cls,
        target: str,
        settings: ChannelSettings,
        *,
        attested: AttestedDialer | None,
        role: int,
    ) -> PeerChannel:
        """The peer's first channel; TlsBindingInvalid when RA-TLS is asked for and the
        peer's certificate is not bound to an active enclave of `role`."""
        peer = cls(target, settings, attested=attested, role=role)
        peer._channel, peer._peer = await dial(target, settings, attested=attested, role=role)
        return peer

    @property
    def channel(self) -> grpc.aio.Channel:
        """The current channel (replaced by `redial`)."""
        if self._channel is None:
            raise RuntimeError("PeerChannel used before open()")
        return self._channel

    @property
    def peer(self) -> AttestedPeer | None:
        """What the current channel's certificate was verified to be (None without RA-TLS)."""
        return self._peer

    @property
    def attested(self) -> bool:
        """Whether this channel is RA-TLS (pinned, re-dialled after a peer restart)."""
        return self._attested is not None

    async def redial(self, stale: grpc.aio.Channel | None = None) -> None:
        """Dial again and verify the peer's certificate again (RA-TLS only; a plain channel
        reconnects by itself). With `stale`, only when that is still the current channel
        (concurrent failed calls dial once). TlsBindingInvalid keeps the current channel."""
        if self._attested is None:
            return
        async with self._lock:
            if stale is not None and stale is not self._channel:
                return
            channel, peer = await dial(
                self.target, self._settings, attested=self._attested, role=self._role
            )
            old, self._channel, self._peer = self._channel, channel, peer
        if old is not None:
            await old.close(None)
        if peer is not None:
            self._log.info(
                "rpc.peer_redialled", target=self.target, address="0x" + peer.address.hex()
            )

    async def ensure_current(self) -> None:
        """Before a call on an RA-TLS channel that is not connected (READY): when the peer
        now presents another certificate (it restarted), dial it again (verified) first,
        so the call is not lost on a handshake the pinned channel can never complete."""
        channel = self._channel
        if self._attested is None or channel is None or self._peer is None:
            return
        if channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY:
            return
        async with self._lock:
            if self._channel is not channel or self._peer is None:
                return  # another caller dialled meanwhile
            if channel.get_state(try_to_connect=False) == grpc.ChannelConnectivity.READY:
                return
            pinned = x509.load_pem_x509_certificate(self._peer.certificate)
            try:
                presented = await fetch_certificate(self.target)
            except NoxError:
                return  # down: the call fails UNAVAILABLE as it would anyway
            if presented == pinned.public_bytes(serialization.Encoding.DER):
                with contextlib.suppress(TimeoutError):  # the pinned server is up: connect
                    await asyncio.wait_for(channel.channel_ready(), _READY_SECONDS)
                return
        try:
            await self.redial(channel)
        except NoxError as refused:  # an impostor, or a peer not registered (yet)
            self._log.warning("rpc.peer_refused", target=self.target, reason=refused.reason)

    def stub(self, factory: Callable[[grpc.aio.Channel], Any]) -> Any:
        """A stub of the peer (`factory`: a generated `*Stub` class) that follows `redial`,
        and re-dials an RA-TLS peer after a call fails UNAVAILABLE."""
        if self._attested is None:
            return factory(self.channel)
        return _FollowingStub(self, factory)

    async def close(self) -> None:
        """Close the current channel."""
        if self._channel is not None:
            await self._channel.close(None)


class _FollowingStub:
    """Forwards each unary-unary call to a stub of the peer's current channel."""

    def __init__(self, peer: PeerChannel, factory: Callable[[grpc.aio.Channel], Any]) -> None:
        self._peer = peer
        self._factory = factory
        self._channel = peer.channel
        self._stub = factory(self._channel)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._peer.ensure_current()
            if self._peer.channel is not self._channel:
                self._channel = self._peer.channel
                self._stub = self._factory(self._channel)
            channel = self._channel
            try:
                return await getattr(self._stub, name)(*args, **kwargs)
            except (grpc.aio.AioRpcError, NoxError) as error:
                if is_unavailable(error):
                    await self._redial(channel)
                raise

        return call

    async def _redial(self, stale: grpc.aio.Channel) -> None:
        try:
            await self._peer.redial(stale)
        except NoxError as refused:  # TlsBindingInvalid, or the peer is still down
            get_logger("nox.rpc.peers").warning(
                "rpc.peer_refused", target=self._peer.target, reason=refused.reason
            )


async def open_peer(
    target: str,
    settings: ChannelSettings,
    *,
    attested: AttestedDialer | None,
    role: int,
    stop: asyncio.Event,
    retry_seconds: float = 2.0,
) -> PeerChannel | None:
    """`PeerChannel.open`, retried (each refusal logged) until it succeeds or `stop` is set
    (then None): at start a peer may not listen yet, or not be registered yet."""
    log = get_logger("nox.rpc.peers")
    while not stop.is_set():
        try:
            return await PeerChannel.open(target, settings, attested=attested, role=role)
        except NoxError as refused:
            log.warning("rpc.peer_refused", target=target, reason=refused.reason,
                        check=refused.metadata.get("check", ""))  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_seconds)
    return None
