"""`noxctl serve kms`: one KMS node built from its settings (`nox.kms.config.KmsSettings`).

Start-up, in order, refusing to serve on any failure:
1. the enclave key: generated in memory (the default; it never leaves the process and is
   registered by the node itself, `nox.chain.registrar`, the operator account of
   `operator_key_file` paying the gas; a restarted node has a new key and a new registration,
   its share unchanged), or a fixed one from `dangerous_enclave_key_file` registered outside
   the process, for reproducible local networks;
2. the share: the sealed share file opened with its KEK and checked against its Feldman
   commitments, and against the published key set (`public_file`, and the registry's KMS
   keys when a chain is configured) — `nox.kms.keys`;
3. the registry (`NodeDirectory`): injected by the caller (devnet, tests), or the attested
   registry view of the attestation bootstrap (`nox.attest`) over the chain
   (`chain_rpc_url`; the TCB policy in force is logged), or — development only — a static
   file;
4. the replay cache: SQL when `replay_database_url` is set (nonces survive a restart),
   memory otherwise;
5. the gRPC server (`nox.rpc.create_server`: health, reflection, typed errors, limits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nox.chain.exceptions import RoleMismatch, SignerNotRegistered
from nox.chain.registrar import SelfRegistration, chain_self_registration
from nox.cli_support import serve_commands
from nox.crypto.keys import EnclaveKey
from nox.crypto.replay import MemoryReplayCache, ReplayCache, SqlReplayCache
from nox.errors import FailedPrecondition, NoxError
from nox.files import private_sqlite
from nox.kms.authz import ROLE_KMS, PublicDecryptableCheck
from nox.kms.authz import ProducerAwareDirectory as NodeDirectory
from nox.kms.config import InvalidKmsSettings, KmsSettings
from nox.kms.keys import (
    Kek,
    LoadedShare,
    PassphraseKek,
    load_kek_file,
    load_public_file,
    load_share_file,
    require_published,
)
from nox.kms.node import KmsNode
from nox.kms.service import SERVICE_NAME, KmsServicer
from nox.rpc import RequestLimits, RpcServer, ServiceSpec, create_server
from nox.rpc.logging import configure_logging, get_logger
from nox.v1 import kms_pb2_grpc

if TYPE_CHECKING:
    from nox.attest.bootstrap import Attestation

CONFIG_ENV = "NOX_KMS_CONFIG_FILE"
_ROLE_NAMES = {"orchestrator": 1, "runner": 2, "gateway": 3, "kms": 4, "ingestor": 5}


class StaticDirectory:
    """A fixed address -> role table standing in for the registry, with no attestation.

    Only for running a node without a chain (`dangerous_static_registry_file`) and for
    tests that are not about the registry. Answers with the registry's reasons.
    """

    def __init__(self, roles: Mapping[bytes, int]) -> None:
        self._roles = {bytes(address): int(role) for address, role in roles.items()}

    @classmethod
    def from_file(cls, path: Path) -> StaticDirectory:
        """Read {"0x<address>": role (number or name)}."""
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            raise InvalidKmsSettings(f"{path.name} is not a readable JSON file") from None
        if not isinstance(document, dict):
            raise InvalidKmsSettings(f"{path.name} must map addresses to roles")
        roles: dict[bytes, int] = {}
        for address, role in document.items():
            try:
                raw = bytes.fromhex(str(address).removeprefix("0x"))
            except ValueError:
                raw = b""
            code = _ROLE_NAMES.get(role) if isinstance(role, str) else role
            if len(raw) != 20 or not isinstance(code, int) or not 1 <= code <= 5:
                raise InvalidKmsSettings(f"{path.name}: bad entry for {address!s:.42}")
            roles[raw] = code
        return cls(roles)

    def require(self, address: bytes, role: int, now: int) -> None:
        del now
        known = self._roles.get(bytes(address))
        if known is None:
            raise SignerNotRegistered("signer is not registered")
        if known != role:
            raise RoleMismatch(f"signer has role {known}, not {role}")

    def require_producer(self, address: bytes, role: int, now: int) -> None:
        """A static directory has no expiry: the same check as `require`."""
        self.require(address, role, now)


def load_enclave_key(settings: KmsSettings) -> EnclaveKey:
    """The node's enclave key: fresh in memory unless a dangerous key file is configured."""
    path = settings.dangerous_enclave_key_file
    if path is None:
        return EnclaveKey.generate()
    data = path.read_bytes()
    if len(data) != 32:
        try:
            data = bytes.fromhex(data.decode("ascii").strip().removeprefix("0x"))
        except (UnicodeDecodeError, ValueError):
            raise InvalidKmsSettings(f"{path.name}: not a 32-byte key or 64 hex digits") from None
    return EnclaveKey.from_bytes(data)


def load_share(settings: KmsSettings) -> LoadedShare:
    """Open and check the share file (against `public_file` when configured)."""
    kek: Kek
    if settings.kek_file is not None:
        kek = load_kek_file(settings.kek_file)
    else:
        assert settings.kek_passphrase is not None  # the settings validator ensures one
        kek = PassphraseKek(settings.kek_passphrase.get_secret_value().encode())
    expected = load_public_file(settings.public_file) if settings.public_file else None
    return load_share_file(settings.share_file, kek, expected=expected)


def build_replay_cache(settings: KmsSettings) -> ReplayCache:
    """SQL-backed (survives restarts) when a database URL is configured, else in memory."""
    if settings.replay_database_url is None:
        return MemoryReplayCache(settings.replay_cache_entries)
    return SqlReplayCache(sa.create_engine(private_sqlite(settings.replay_database_url)))


def build_node(
    settings: KmsSettings,
    *,
    directory: NodeDirectory,
    share: LoadedShare | None = None,
    enclave_key: EnclaveKey | None = None,
    replay: ReplayCache | None = None,
    is_publicly_decryptable: PublicDecryptableCheck | None = None,
    clock: Callable[[], int] | None = None,
) -> KmsNode:
    """A KmsNode from `settings`; every argument given overrides what settings would build."""
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return KmsNode(
        share=share if share is not None else load_share(settings),
        enclave_key=enclave_key if enclave_key is not None else load_enclave_key(settings),
        domain=settings.domain,
        registry=directory,
        replay=replay if replay is not None else build_replay_cache(settings),
        settings=settings.node_settings(),
        is_publicly_decryptable=is_publicly_decryptable,
        **extra,
    )


def build_server(node: KmsNode, settings: KmsSettings) -> RpcServer:
    """The gRPC server of `node` (bound, not started); call inside the serving event loop.

    Its health starts as the node's readiness (`KmsNode.ready`)."""
    spec = ServiceSpec(
        SERVICE_NAME,
        kms_pb2_grpc.add_KmsServiceServicer_to_server,
        KmsServicer(node),
        serving=node.ready,
        request_limits=RequestLimits(
            default=4096,  # GetPublicKey's request is empty
            methods={"Delegate": settings.max_delegate_request_bytes},
        ),
    )
    return create_server([spec], settings=settings.server_settings(node.tls_identity))


def self_registration(
    settings: KmsSettings, key: EnclaveKey, endpoint: str, attestation: Attestation | None
) -> SelfRegistration | None:
    """The node's own registration, quoted by `attestation`'s provider (None without a
    chain or an operator key file)."""
    if settings.chain_rpc_url is None or settings.operator_key_file is None:
        return None
    if attestation is None:
        raise FailedPrecondition("registering needs the node's attestation (quote provider)")
    return chain_self_registration(
        chain_rpc_url=settings.chain_rpc_url,
        registry_address=settings.registry_address,
        operator_key_file=settings.operator_key_file,
        enclave=key,
        role=ROLE_KMS,
        endpoint=settings.endpoint or endpoint,
        quote=attestation.quote,
        refresh_fraction=settings.registration_refresh_fraction,
        check_seconds=settings.registration_check_seconds,
    )


def check_ready(node: KmsNode, registration: SelfRegistration | None) -> bool:
    """Register or refresh (when the node registers itself), then check the node as any
    relying party would; sets and returns `node.ready`."""
    if registration is not None:
        registration.check()
    return node.check_registered(node.now())


async def watch_registration(
    node: KmsNode,
    server: RpcServer,
    interval: float,
    registration: SelfRegistration | None = None,
) -> None:
    """Re-check (and refresh) the node's own registration every `interval` seconds (every
    few seconds while not ready); health follows it."""
    while True:
        await asyncio.sleep(interval if node.ready else min(interval, 5.0))
        ready = await asyncio.to_thread(check_ready, node, registration)
        await server.set_serving(SERVICE_NAME, ready)


def chain_views(
    settings: KmsSettings, share: LoadedShare, *, attestation: Attestation | None = None
) -> tuple[NodeDirectory, PublicDecryptableCheck | None]:
    """The registry view and ACL check over `chain_rpc_url`; checks the share is the
    registry's (PublicKeyMismatch otherwise). Peers' quotes are verified by the attestation
    bootstrap (`nox.attest`): Intel's root and live collateral from the PCCS, the TCB policy;
    a simulated-TDX dev root only with `dangerous_simulated_tdx_dir`."""
    from nox.attest.bootstrap import build_attestation
    from nox.chain import AclClient, RegistryClient, RpcChain

    if settings.chain_rpc_url is None:
        raise InvalidKmsSettings("no chain_rpc_url")
    attestation = attestation or build_attestation(settings)
    backend = RpcChain(settings.chain_rpc_url)
    if backend.chain_id != settings.chain_id:
        raise InvalidKmsSettings(f"the chain's id is {backend.chain_id}, not {settings.chain_id}")
    registry = RegistryClient(backend, settings.registry_address)
    keys = registry.kms_keys()
    require_published(
        share,
        public_key=keys.public_key,
        public_shares=keys.public_shares,
        threshold=keys.threshold,
    )
    public_check = None
    if settings.acl_address is not None:
        public_check = AclClient(backend, settings.acl_address).is_publicly_decryptable
    return attestation.registry_view(registry), public_check


async def serve(
    settings: KmsSettings,
    *,
    directory: NodeDirectory | None = None,
    is_publicly_decryptable: PublicDecryptableCheck | None = None,
    enclave_key: EnclaveKey | None = None,
    stop: asyncio.Event | None = None,
    signals: Sequence[int] | None = None,
    on_listening: Callable[[KmsNode, RpcServer], None] | None = None,
    clock: Callable[[], int] | None = None,
) -> None:
    """Build the node and its server from `settings` and serve until `stop` (or a signal).

    Without an injected `directory` the registry comes from the chain, or from the
    dangerous static file; with neither the node refuses to start.
    """
    share = load_share(settings)
    external = enclave_key is not None or settings.dangerous_enclave_key_file is not None
    if settings.chain_rpc_url is not None and settings.operator_key_file is None and not external:
        raise FailedPrecondition(
            "operator_key_file is required: the node registers its in-memory enclave key "
            "itself and the operator account pays the gas"
        )
    attestation: Attestation | None = None
    if directory is None:
        if settings.chain_rpc_url is not None:
            from nox.attest.bootstrap import build_attestation

            attestation = build_attestation(settings)
            directory, chain_check = chain_views(settings, share, attestation=attestation)
            is_publicly_decryptable = is_publicly_decryptable or chain_check
        elif settings.dangerous_static_registry_file is not None:
            directory = StaticDirectory.from_file(settings.dangerous_static_registry_file)
        else:
            raise FailedPrecondition(
                "no registry: set chain_rpc_url (or, for development only, "
                "dangerous_static_registry_file)"
            )
    key = enclave_key if enclave_key is not None else load_enclave_key(settings)
    node = build_node(
        settings,
        directory=directory,
        share=share,
        enclave_key=key,
        is_publicly_decryptable=is_publicly_decryptable,
        clock=clock,
    )
    server = build_server(node, settings)
    if external:
        registration = None
    else:
        if attestation is None and settings.operator_key_file is not None:
            from nox.attest.bootstrap import build_attestation

            attestation = build_attestation(settings)
        registration = self_registration(settings, key, server.target, attestation)
    log = get_logger("nox.kms")
    if attestation is not None:
        attestation.register_metrics(server.metrics.registry)
        attestation.log_policy(log, service="kms")
        attestation.start()
    # Serve only while registered and attested as a KMS node (DESIGN §3).
    await asyncio.to_thread(check_ready, node, registration)
    await server.set_serving(SERVICE_NAME, node.ready)
    log.info(
        "kms.listening",
        target=server.target,
        node_index=node.index,
        enclave_address="0x" + node.address.hex(),
        role=ROLE_KMS,
        ready=node.ready,
    )
    if on_listening is not None:
        on_listening(node, server)
    watcher = asyncio.create_task(
        watch_registration(node, server, settings.registration_check_seconds, registration)
    )
    try:
        if signals is None:
            await server.run_until_stopped(stop)
        else:
            await server.run_until_stopped(stop, signals=signals)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if attestation is not None:
            attestation.close()


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve kms` to noxctl (creating `serve` if no other service added it yet)."""
    services = serve_commands(subparsers)
    kms = services.add_parser(
        "kms",
        help="one threshold KMS node (settings: NOX_KMS_* environment variables)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kms.add_argument(
        "--config", type=Path, default=None, help=f"TOML or JSON settings file (or ${CONFIG_ENV})"
    )
    kms.add_argument("--log-format", choices=("json", "console"), default="json")
    kms.add_argument("--log-level", default="info")
    kms.set_defaults(func=_serve_kms)


def _print_listening(node: KmsNode, server: RpcServer) -> None:
    line = {
        "service": SERVICE_NAME,
        "target": server.target,
        "node_index": node.index,
        "enclave_address": "0x" + node.address.hex(),
    }
    print(json.dumps(line), flush=True)


def _serve_kms(args: argparse.Namespace) -> int:
    configure_logging(json=args.log_format == "json", level=args.log_level)
    config = args.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    try:
        settings = KmsSettings.load(config)
        asyncio.run(serve(settings, on_listening=_print_listening))
    except NoxError as exc:
        print(f"noxctl serve kms: {exc}", file=sys.stderr)
        return 2
    return 0
