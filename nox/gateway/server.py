"""Run a gateway: wire settings into a context, serve GatewayService, `noxctl serve gateway`.

`create_gateway_server(ctx, ...)` builds the gRPC server around an already wired context
(tests and the devnet inject their own registry view, ACL view and KMS client);
`serve(settings)` wires a production instance from `GatewaySettings`: the store (migrated),
a SQL seen-nonce table in the same database (replay protection survives a restart), the
chain through JSON-RPC, the registry view with off-chain DCAP verification of peers'
quotes, the ACL, and the KMS nodes (each node's identity and the key set are checked
against the registry), then the value-tag key, derived through the KMS (`nox.gateway.tagkey`)
once the gateway is registered (the KMS serves registered gateways only). The enclave key is
generated in memory at start, never written anywhere, and registered by the gateway itself
(`nox.chain.registrar`; the operator account of `operator_key_file` pays the gas); health is
NOT_SERVING until it is registered and holds its tag key, and again if a refresh fails past
expiry. A restarted gateway has a new key and a new registration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nox.chain.registrar import SelfRegistration, chain_self_registration
from nox.cli_support import serve_commands
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import SqlReplayCache
from nox.errors import InvalidArgument, NoxError
from nox.gateway.config import GatewaySettings
from nox.gateway.context import (
    ROLE_GATEWAY,
    ROLE_KMS,
    Deployment,
    GatewayContext,
    NodeDirectory,
    Serialized,
)
from nox.gateway.exceptions import WrongChain
from nox.gateway.expiry import InputSweeper
from nox.gateway.kms import KmsFanout, KmsNodeEndpoint
from nox.gateway.limits import RateLimit, RateLimiter, request_limits
from nox.gateway.service import DEFAULT_INPUT_QUOTA, SERVICE_NAME, GatewayServicer
from nox.gateway.store import AsyncHandleStore, StoreSettings
from nox.gateway.tagkey import derive_tag_key
from nox.kms.exceptions import PublicKeyMismatch
from nox.kms.wire import public_key_from_proto
from nox.rpc import ServerSettings, ServiceSpec, create_server
from nox.rpc.client import ChannelSettings
from nox.rpc.exceptions import TlsBindingInvalid
from nox.rpc.logging import get_logger
from nox.rpc.peers import PeerChannel
from nox.rpc.ratls import AttestedDialer, TlsIdentity, attested_identity
from nox.rpc.server import RpcServer
from nox.v1 import gateway_pb2_grpc, kms_pb2, kms_pb2_grpc


def create_gateway_server(
    ctx: GatewayContext,
    *,
    server_settings: ServerSettings,
    rate_limit: RateLimit,
    input_quota: RateLimit = DEFAULT_INPUT_QUOTA,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[RpcServer, GatewayServicer]:
    """A (not yet started) server serving GatewayService over `ctx`."""
    servicer = GatewayServicer(
        ctx,
        RateLimiter(rate_limit, clock=monotonic),
        RateLimiter(input_quota, clock=monotonic),
    )
    spec = ServiceSpec(
        name=SERVICE_NAME,
        add=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
        servicer=servicer,
        serving=ctx.ready,
        request_limits=request_limits(ctx.limits),
    )
    return create_server([spec], settings=server_settings), servicer


def server_settings(
    settings: GatewaySettings, tls_identity: Callable[[str], TlsIdentity] | None = None
) -> ServerSettings:
    """The nox.rpc server settings of a gateway; with `attested_tls`, its certificate comes
    from `tls_identity` (see `attested_identity`)."""
    if settings.attested_tls and tls_identity is None:
        raise InvalidArgument("attested_tls needs the gateway's enclave key")
    return ServerSettings(
        host=settings.host,
        port=settings.port,
        metrics_port=settings.metrics_port,
        tls_cert_chain=settings.tls_cert_chain,
        tls_private_key=settings.tls_private_key,
        tls_identity=tls_identity if settings.attested_tls else None,
    )


def kms_channel_settings(settings: GatewaySettings) -> ChannelSettings:
    """How the gateway dials the KMS nodes (TLS roots when configured)."""
    return ChannelSettings(tls_root_certificates=settings.kms_tls_root_certificates)


def _bytes20(text: str, name: str) -> bytes:
    if not text:
        raise InvalidArgument(f"NOX_GATEWAY_{name.upper()} is required")
    return bytes.fromhex(text.removeprefix("0x"))


def _load_key(path: Path | None) -> EnclaveKey:
    if path is None:
        return EnclaveKey.generate()
    return EnclaveKey.from_bytes(bytes.fromhex(path.read_text().strip().removeprefix("0x")))


class KmsLink:
    """The gateway's channel to one KMS node (`nox.rpc.peers.PeerChannel`).

    With RA-TLS the channel is pinned to the node's certificate: after a restart (new enclave
    key, new certificate) `rediscover` dials again, and the new certificate is verified
    against the registry before the node's new address is asked for and used.
    """

    def __init__(self, peer: PeerChannel, call_timeout: float) -> None:
        self._peer = peer
        self._timeout = call_timeout
        self._stub = peer.stub(kms_pb2_grpc.KmsServiceStub)

    @classmethod
    async def open(
        cls,
        target: str,
        settings: ChannelSettings,
        dialer: AttestedDialer | None,
        call_timeout: float,
    ) -> KmsLink:
        """A link with its first channel (TlsBindingInvalid: an unbound RA-TLS server)."""
        peer = await PeerChannel.open(target, settings, attested=dialer, role=ROLE_KMS)
        return cls(peer, call_timeout)

    def check_address(self, address: bytes) -> None:
        """Refuse a node whose GetPublicKey names another enclave than its certificate."""
        bound = self._peer.peer
        if bound is not None and bound.address != address:
            raise TlsBindingInvalid(
                f"KMS node {self._peer.target} answers for another enclave than its certificate's",
                metadata={"check": "address"},
            )

    async def public_key(self) -> kms_pb2.GetPublicKeyResponse:
        """The node's public GetPublicKey."""
        response: kms_pb2.GetPublicKeyResponse = await self._stub.GetPublicKey(
            kms_pb2.GetPublicKeyRequest(), timeout=self._timeout
        )
        return response

    async def call(self, request: kms_pb2.DelegateRequest) -> kms_pb2.DelegateResponse:
        """The node's Delegate over the current channel."""
        response: kms_pb2.DelegateResponse = await self._stub.Delegate(request)
        return response

    async def rediscover(self) -> bytes:
        """The node's current enclave address; with RA-TLS, over a channel dialled (and
        verified) again: a restarted node's certificate is new."""
        await self._peer.redial()
        info = await self.public_key()
        address = bytes(info.node.enclave_address)
        self.check_address(address)
        return address


async def connect_kms(
    endpoints: tuple[str, ...],
    *,
    key: EnclaveKey,
    domain: Domain,
    directory: NodeDirectory,
    registry_keys: tuple[bytes, tuple[bytes, ...], int],
    settings: GatewaySettings,
    now: int,
) -> KmsFanout:
    """Ask each node for its key set; check it is the registry's and the node is an active
    KMS enclave; return the fan-out over them."""
    nodes = []
    public = None
    dialer = (
        AttestedDialer(directory, domain, lambda: int(time.time()))
        if settings.kms_attested_tls
        else None
    )
    for target in endpoints:
        link = await KmsLink.open(
            target, kms_channel_settings(settings), dialer, settings.kms_timeout_seconds
        )
        info = await link.public_key()
        node_public = public_key_from_proto(info)
        pk, shares, threshold = registry_keys
        if (node_public.public_key, node_public.public_shares, node_public.threshold) != (
            pk,
            shares,
            threshold,
        ):
            raise PublicKeyMismatch(f"KMS node {target} serves another key than the registry's")
        address = bytes(info.node.enclave_address)
        link.check_address(address)
        await asyncio.to_thread(directory.require, address, ROLE_KMS, now)
        nodes.append(
            KmsNodeEndpoint(
                index=info.node_index, address=address, call=link.call, rediscover=link.rediscover
            )
        )
        public = node_public
    if public is None:
        raise InvalidArgument("no KMS endpoint configured (NOX_GATEWAY_KMS_ENDPOINTS)")
    return KmsFanout(
        nodes,
        key=key,
        domain=domain,
        public=public,
        directory=directory,
        timeout=settings.kms_timeout_seconds,
        extra_responses=settings.kms_extra_responses,
    )


async def build_gateway(
    settings: GatewaySettings,
) -> tuple[RpcServer, GatewayContext]:
    """Wire a production gateway from `settings` (see the module docstring); not started.

    The caller owns the result: start the server, and close `ctx.store` after stopping it.
    """
    # Imported here: the chain stack (web3, py-evm) is heavy and only this needs it.
    from nox.attest.bootstrap import build_attestation
    from nox.chain.backend import RpcChain
    from nox.chain.contracts import AclClient, RegistryClient

    key = _load_key(settings.dangerous_enclave_key_file)
    external = settings.dangerous_enclave_key_file is not None
    if settings.operator_key_file is None and not external:
        raise InvalidArgument(
            "NOX_GATEWAY_OPERATOR_KEY_FILE is required: the gateway registers its in-memory "
            "enclave key itself and the operator account pays the gas"
        )
    deployment = Deployment(
        chain_id=settings.chain_id,
        registry_address=_bytes20(settings.registry_address, "registry_address"),
        compute_address=_bytes20(settings.compute_address, "compute_address"),
        acl_address=_bytes20(settings.acl_address, "acl_address"),
    )
    attestation = build_attestation(settings)
    chain = await asyncio.to_thread(RpcChain, settings.chain_rpc_url)
    if chain.chain_id != deployment.chain_id:
        raise WrongChain(
            f"the JSON-RPC endpoint serves chain {chain.chain_id}, not {deployment.chain_id}"
        )
    registry_client = RegistryClient(chain, deployment.registry_address)
    view = attestation.registry_view(
        registry_client, refresh_interval=settings.registry_refresh_seconds
    )
    views = Serialized(view, AclClient(chain, deployment.acl_address))
    kms_keys = await asyncio.to_thread(registry_client.kms_keys)
    store = await AsyncHandleStore.open(
        StoreSettings(url=settings.store_url, pool_size=settings.store_pool_size)
    )
    try:
        domain = Domain(
            chain_id=deployment.chain_id, verifying_contract=deployment.registry_address
        )
        kms = await connect_kms(
            settings.kms_endpoints,
            key=key,
            domain=domain,
            directory=views,
            registry_keys=(kms_keys.public_key, tuple(kms_keys.public_shares), kms_keys.threshold),
            settings=settings,
            now=int(time.time()),
        )
        ctx = GatewayContext(
            key=key,
            deployment=deployment,
            store=store,
            directory=views,
            acl=views,
            kms=kms,
            replay=SqlReplayCache(store.engine),
            limits=settings.limits,
            dangerous_accept_plaintext_inputs=settings.dangerous_accept_plaintext_inputs,
            attestation=attestation,
        )
        ctx.ready = external  # a self-registering gateway serves once registered
        if external:  # registered from outside already: the KMS answers it now
            await derive_tag_key(ctx)  # before serving: EncryptInput needs it
        server, _ = create_gateway_server(
            ctx,
            server_settings=server_settings(
                settings, attested_identity(key, domain, settings.endpoint)
            ),
            rate_limit=RateLimit(settings.public_rate_per_second, settings.public_burst),
            input_quota=RateLimit(settings.input_rate_bytes_per_second, settings.input_burst_bytes),
        )
    except BaseException:
        await store.close()
        raise
    attestation.register_metrics(server.metrics.registry)
    attestation.log_policy(get_logger("nox.gateway"), service="gateway")
    attestation.start()
    return server, ctx


def self_registration(
    settings: GatewaySettings, ctx: GatewayContext, target: str
) -> SelfRegistration | None:
    """The gateway's own registration (None when a dangerous key file is registered outside)."""
    if settings.dangerous_enclave_key_file is not None or settings.operator_key_file is None:
        return None
    if ctx.attestation is None:
        raise InvalidArgument("registering needs the gateway's attestation (quote provider)")
    return chain_self_registration(
        chain_rpc_url=settings.chain_rpc_url,
        registry_address=settings.registry_address,
        operator_key_file=settings.operator_key_file,
        enclave=ctx.key,
        role=ROLE_GATEWAY,
        endpoint=settings.endpoint or target,
        quote=ctx.attestation.quote,
        refresh_fraction=settings.registration_refresh_fraction,
        check_seconds=settings.registration_check_seconds,
        self_check=ctx.directory.require,
        on_register=getattr(ctx.directory, "refresh", None),
    )


async def _tag_key_once_registered(ctx: GatewayContext, attempts: int = 10) -> bool:
    """Derive the value-tag key right after the gateway registered (the KMS nodes may need a
    moment to see the registration); False, logged, when the KMS does not answer yet."""
    for attempt in range(attempts):
        try:
            await derive_tag_key(ctx)
            return True
        except NoxError as exc:
            get_logger("nox.gateway").warning(
                "gateway.tag_key_pending", reason=exc.reason, attempt=attempt + 1
            )
            await asyncio.sleep(1.0)
    return False


async def keep_registered(
    registration: SelfRegistration, ctx: GatewayContext, server: RpcServer, stop: asyncio.Event
) -> None:
    """Keep the gateway registered until `stop`; `ctx.ready` and health follow."""

    async def follow(registered: bool) -> None:
        if registered and ctx.tag_key is None:
            registered = await _tag_key_once_registered(ctx)
        ctx.ready = registered
        await server.set_serving(SERVICE_NAME, registered)

    await registration.keep_registered(stop, on_change=follow)


async def serve(settings: GatewaySettings, *, stop: asyncio.Event | None = None) -> None:
    """Run a production gateway until `stop` is set or SIGINT/SIGTERM (see the module doc)."""
    server, ctx = await build_gateway(settings)
    stop = stop if stop is not None else asyncio.Event()
    keeper = None
    sweeper = InputSweeper(ctx, interval=settings.input_sweep_interval_seconds)
    try:
        registration = self_registration(settings, ctx, server.target)
        if registration is not None:
            keeper = asyncio.create_task(keep_registered(registration, ctx, server, stop))
        # operator-facing start-up line; no secret in it
        print(f"gateway 0x{ctx.address.hex()} serving on {server.target}", flush=True)
        if ctx.dangerous_accept_plaintext_inputs:
            print(
                "WARNING: NOX_GATEWAY_DANGEROUS_ACCEPT_PLAINTEXT_INPUTS is on: inputs sent in "
                "the clear are accepted (anyone on the wire can read them)",
                file=sys.stderr,
                flush=True,
            )
        sweeper.start()
        await server.run_until_stopped(stop)
    finally:
        stop.set()
        if keeper is not None:
            await keeper
        await sweeper.stop()
        await ctx.store.close()
        if ctx.attestation is not None:
            ctx.attestation.close()


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve gateway` to noxctl (creating `serve` if no other service added it yet)."""
    services = serve_commands(subparsers)
    gateway = services.add_parser(
        "gateway", help="the Handle Gateway (settings: NOX_GATEWAY_* environment variables)"
    )
    gateway.set_defaults(func=_serve_gateway)


def _serve_gateway(args: argparse.Namespace) -> int:
    del args
    asyncio.run(serve(GatewaySettings()))
    return 0
