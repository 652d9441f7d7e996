"""`NoxClient`: what an integrator calls to encrypt inputs, wait for results and decrypt.

Every answer is checked on the client before it is believed:

- `encrypt_input`: the value never crosses the wire in the clear: it is sealed
  (`nox.crypto.sealing`) to the gateway's enclave public key, after checking that the key's
  address is the gateway's and that this address is an active, attested ROLE_GATEWAY
  enclave on NoxRegistry (`directory`, e.g. `nox.chain.registry.RegistryView`; checked on
  every call, so a revocation takes effect). The handle has the chain and type asked for;
  the 137-byte input proof
  names the owner and application asked for and is signed by the gateway's enclave key
  (EIP-712 `HandleProof` in the NoxCompute domain), as NoxCompute will check on-chain.
- `decrypt`: a fresh ephemeral requester key per call; the user signs a
  `DecryptionAuthorization` limited to the handles asked for; each KMS answer's envelope is
  verified (audience the gateway, window, and signer role when a registry is given); each
  partial is opened with the ephemeral key and its DLEQ proof checked against the published
  public share `PK_i`; t valid partials are combined; the ciphertext is opened with the
  handle as associated data. Every node whose answer fails is named. Correctness rests on
  the trusted public shares: give the client the registry's copy (`kms_public`) in
  production, not one fetched from a KMS node (`kms_target`).
- `public_decrypt`: the decryption proof carries the returned plaintext and is signed by
  the gateway (EIP-712 `DecryptionProof` in the NoxCompute domain).

The gateway's enclave address comes from `GetGatewayInfo` and is cached; a gateway that
restarted has a new enclave key (it registers itself again). With a registry (`directory`),
when a decryption proof or a KMS answer does not match the cached address, the client asks
`GetGatewayInfo` once more and adopts a new address only if the registry holds it as an
active, attested gateway; then it checks (or, for `decrypt`, asks) again under it.

Errors from the servers arrive as their typed `nox.errors` classes (`nox.rpc.create_channel`
rebuilds them); the client's own checks raise the classes named in `nox.sdk.exceptions`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

import grpc.aio

from nox.crypto import ecies
from nox.crypto.delegation import BadNode, RequesterKey, RequesterKeyKind
from nox.crypto.eip712 import Domain
from nox.crypto.exceptions import SealedInputInvalid, UnexpectedSigner
from nox.crypto.keys import address_from_public_key, recover_address
from nox.crypto.sealing import sealed_input_request
from nox.crypto.threshold import ThresholdPublicKey
from nox.crypto.threshold_exceptions import QuorumNotReached
from nox.errors import InvalidArgument, NoxError
from nox.gateway.exceptions import WrongChain
from nox.gateway.proofs import (
    INPUT_PROOF_SIZE,
    decryption_proof_digest,
    handle_proof_digest,
)
from nox.handles import Handle, Plaintext, ValueType, decode_plaintext, encode_plaintext
from nox.kms.authz import NodeDirectory
from nox.kms.client import collect_partials, combine_targets
from nox.kms.exceptions import PublicKeyMismatch
from nox.kms.wire import public_key_from_proto
from nox.rpc.client import create_channel
from nox.rpc.peers import PeerChannel
from nox.rpc.ratls import AttestedDialer
from nox.sdk.authorization import UserSigner, build_authorization
from nox.sdk.exceptions import GatewayKeyInvalid, ResponseInvalid, ResultTimeout
from nox.sdk.results import (
    ClientSettings,
    Decryption,
    EncryptedInput,
    GatewayInfo,
    HandleStatus,
    PinnedNodes,
    PublicValue,
)
from nox.v1 import common_pb2, decryption_pb2, gateway_pb2, gateway_pb2_grpc, kms_pb2, kms_pb2_grpc

__all__ = [
    "ClientSettings",
    "Decryption",
    "EncryptedInput",
    "GatewayInfo",
    "HandleStatus",
    "KmsKeySource",
    "NoxClient",
    "PinnedNodes",
    "PublicValue",
]

_ORIGINS = {
    gateway_pb2.HANDLE_ORIGIN_INPUT: "input",
    gateway_pb2.HANDLE_ORIGIN_TASK: "task",
}


class _AnyKmsSigner:
    """Used when no registry is given: the KMS envelope's signer is not looked up.

    It does not weaken what the client learns: each partial is accepted only with a DLEQ
    proof against the trusted public share `PK_i`, which only the holder of `x_i` can make,
    and the plaintext only with a valid AES-GCM tag under the handle.
    """

    def require(self, address: bytes, role: int, now: int) -> None:
        del address, role, now


class KmsKeySource(Protocol):
    """The KMS key set published on-chain (`nox.chain.contracts.RegistryClient` is one)."""

    def kms_keys(self) -> Any:
        """An object with `public_key`, `public_shares` and `threshold` (NoxRegistry)."""
        ...


class NoxClient:
    """An async client of one gateway (and optionally one KMS node for the key set).

    Use it as `async with NoxClient("localhost:50051", directory=..., kms_public=...) as
    nox: ...`. `directory` (e.g. `nox.chain.registry.RegistryView`, or `PinnedNodes`) says
    which gateway inputs may be sealed to: its enclave address must be an active
    ROLE_GATEWAY enclave there (required to encrypt inputs, unless
    `ClientSettings.dangerous_skip_gateway_registry_check`). `kms_directory` (the same
    RegistryView, in production) also checks that each KMS answer is signed by a registered
    KMS enclave. `kms_public` is the published threshold key set (registry or
    `public.json`); without it, `kms_target` names a KMS node whose GetPublicKey answer is
    used: that answer is not signed, so it is checked against `kms_registry` (the key set
    NoxRegistry publishes, e.g. `nox.chain.contracts.RegistryClient`) and refused on any
    difference (KMS_PUBLIC_KEY_MISMATCH); without a registry it is refused unless
    `ClientSettings.dangerous_unverified_kms_key`.
    """

    def __init__(
        self,
        gateway_target: str,
        *,
        kms_public: ThresholdPublicKey | None = None,
        kms_target: str | None = None,
        directory: NodeDirectory | None = None,
        kms_directory: NodeDirectory | None = None,
        kms_registry: KmsKeySource | None = None,
        settings: ClientSettings | None = None,
        domain: Domain | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings if settings is not None else ClientSettings()
        self.gateway_target = gateway_target
        self._peer: PeerChannel | None = None
        self._dialer: AttestedDialer | None = None
        self._gateway: Any = None
        self._channel: grpc.aio.Channel | None = None
        if self.settings.gateway_attested_tls:
            if directory is None or domain is None:
                raise InvalidArgument("gateway_attested_tls needs the directory and the domain")
            self._dialer = AttestedDialer(directory, domain, lambda: int(clock()))
        else:
            channel = create_channel(gateway_target, self.settings.channel)
            self._gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            self._channel = channel
        self._kms_target = kms_target
        self._kms_public = kms_public
        self._kms_registry = kms_registry
        self._registry = directory
        self._directory: NodeDirectory = kms_directory or _AnyKmsSigner()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._info: GatewayInfo | None = None

    def __repr__(self) -> str:
        return f"NoxClient(gateway={self.gateway_target!r})"

    async def __aenter__(self) -> NoxClient:
        await self.connect()
        return self

    async def connect(self) -> None:
        """With `gateway_attested_tls`: dial the gateway and verify its RA-TLS certificate
        (TlsBindingInvalid, before any request, when it is not a registered gateway's)."""
        if self._dialer is not None and self._peer is None:
            self._peer = await PeerChannel.open(
                self.gateway_target, self.settings.channel, attested=self._dialer,
                role=common_pb2.ROLE_GATEWAY,
            )  # fmt: skip
            self._gateway = self._peer.stub(gateway_pb2_grpc.GatewayServiceStub)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the gRPC channel."""
        if self._peer is not None:
            await self._peer.close()
        elif self._dialer is None and self._channel is not None:
            await self._channel.close(None)

    def _now(self) -> int:
        return int(self._clock())

    # ------------------------------------------------------------------ info

    async def info(self, *, refresh: bool = False) -> GatewayInfo:
        """The gateway's identity and deployment (cached after the first call)."""
        if self._info is None or refresh:
            response = await self._gateway.GetGatewayInfo(gateway_pb2.GetGatewayInfoRequest())
            node, deployment = response.node, response.node.deployment
            bound = self._peer.peer if self._peer is not None else None
            if bound is not None and bytes(node.enclave_address) != bound.address:
                raise ResponseInvalid("the gateway answers for another enclave than its TLS's")
            if len(node.enclave_address) != 20 or len(deployment.registry_address) != 20:
                raise ResponseInvalid("gateway info lacks its enclave or registry address")
            self._info = GatewayInfo(
                address=bytes(node.enclave_address),
                chain_id=deployment.chain_id,
                registry_address=bytes(deployment.registry_address),
                compute_address=bytes(deployment.compute_address),
                acl_address=bytes(deployment.acl_address),
                kms_public_key=bytes(response.kms_public_key),
                kms_epoch=response.kms_epoch,
                kms_threshold=response.kms_threshold,
                max_batch_handles=max(1, response.max_batch_handles),
                max_authorization_seconds=response.max_authorization_seconds or 3600,
                enclave_public_key=bytes(response.enclave_public_key),
            )
        return self._info

    async def _sealing_key(self, info: GatewayInfo) -> bytes:
        """The gateway's enclave public key, once it is shown to be a registered gateway's."""
        try:
            address = address_from_public_key(info.enclave_public_key)
        except InvalidArgument:
            raise GatewayKeyInvalid("the gateway announced no valid enclave public key") from None
        if address != info.address:
            raise GatewayKeyInvalid(
                "the gateway's enclave public key is not the key of its enclave address",
                metadata={"address": "0x" + info.address.hex()},
            )
        if self._registry is not None:
            await asyncio.to_thread(
                self._registry.require, address, common_pb2.ROLE_GATEWAY, self._now()
            )
        elif not self.settings.dangerous_skip_gateway_registry_check:
            raise InvalidArgument(
                "sealing an input needs NoxRegistry to check the gateway: pass directory"
            )
        return info.enclave_public_key

    async def kms_public(self) -> ThresholdPublicKey:
        """The trusted KMS key set, checked against the gateway's key, threshold and epoch."""
        info = await self.info()
        if self._kms_public is None:
            if self._kms_target is None:
                raise InvalidArgument(
                    "decryption needs the KMS public shares: pass kms_public or kms_target"
                )
            if self._kms_registry is None and not self.settings.dangerous_unverified_kms_key:
                raise InvalidArgument(
                    "a KMS node's key set is unsigned: pass kms_registry to check it against "
                    "the registry (or kms_public)"
                )
            channel = create_channel(self._kms_target, self.settings.channel)
            try:
                stub = kms_pb2_grpc.KmsServiceStub(channel)
                response = await stub.GetPublicKey(kms_pb2.GetPublicKeyRequest())
            finally:
                await channel.close(None)
            fetched = public_key_from_proto(response)
            if self._kms_registry is not None:
                await self._check_registered(fetched)
            self._kms_public = fetched
        public = self._kms_public
        if (public.public_key, public.threshold, public.epoch) != (
            info.kms_public_key,
            info.kms_threshold,
            info.kms_epoch,
        ):
            raise PublicKeyMismatch("the gateway serves another KMS key set than the trusted one")
        return public

    async def _check_registered(self, public: ThresholdPublicKey) -> None:
        """Refuse a key set that is not the one NoxRegistry publishes."""
        assert self._kms_registry is not None
        keys = await asyncio.to_thread(self._kms_registry.kms_keys)
        published = (bytes(keys.public_key), tuple(bytes(s) for s in keys.public_shares))
        if (public.public_key, tuple(public.public_shares)) != published or (
            public.threshold != keys.threshold
        ):
            raise PublicKeyMismatch("the KMS node serves a key set the registry does not publish")

    # ------------------------------------------------------------------ inputs

    async def encrypt_input(
        self,
        value: int | bool | bytes | str,
        value_type: ValueType | int,
        *,
        owner: bytes,
        application: bytes,
    ) -> EncryptedInput:
        """Encrypt `value` as `value_type` for `owner` to pass to `application`.

        Raises InvalidPlaintext (before any call) when the value does not fit the type;
        GatewayKeyInvalid, or the registry's PermissionDenied, when the gateway's enclave key
        is not a registered gateway's (nothing is sent); UnexpectedSigner when the proof is
        not the gateway's.
        """
        vt = value_type if isinstance(value_type, ValueType) else ValueType.from_code(value_type)
        plaintext = encode_plaintext(vt, value)
        if len(owner) != 20 or len(application) != 20:
            raise InvalidArgument("owner and application must be 20-byte addresses")
        info = await self.info()
        try:
            response = await self._send_sealed(info, plaintext, vt, owner, application)
        except SealedInputInvalid:
            # The gateway restarted with a new enclave key since `info` was cached: learn
            # (and check) the new one, then seal again. The value is never sent unsealed.
            info = await self.info(refresh=True)
            response = await self._send_sealed(info, plaintext, vt, owner, application)
        handle, proof = bytes(response.handle), bytes(response.handle_proof)
        parsed = Handle.from_bytes(handle)
        if parsed.chain_id != info.chain_id or parsed.type_code != vt.code:
            raise ResponseInvalid("the gateway returned a handle of another chain or type")
        if len(proof) != INPUT_PROOF_SIZE:
            raise ResponseInvalid(f"an input proof is {INPUT_PROOF_SIZE} bytes, got {len(proof)}")
        created_at = int.from_bytes(proof[40:72], "big")
        if proof[:20] != owner or proof[20:40] != application or created_at != response.created_at:
            raise ResponseInvalid("the input proof is for another owner, application or time")
        digest = handle_proof_digest(info.compute_domain, handle, owner, application, created_at)
        if recover_address(digest, proof[72:]) != info.address:
            raise UnexpectedSigner("the input proof is not signed by the gateway")
        return EncryptedInput(handle=handle, proof=proof, created_at=created_at)

    async def _send_sealed(
        self, info: GatewayInfo, plaintext: bytes, vt: ValueType, owner: bytes, app: bytes
    ) -> gateway_pb2.EncryptInputResponse:
        request = sealed_input_request(
            await self._sealing_key(info),
            plaintext,
            chain_id=info.chain_id,
            type_code=vt.code,
            owner=owner,
            application=app,
        )
        response: gateway_pb2.EncryptInputResponse = await self._gateway.EncryptInput(request)
        return response

    # ------------------------------------------------------------------ status

    async def handle_status(self, handles: Sequence[bytes]) -> list[HandleStatus]:
        """The public status of each handle, in order."""
        if not handles:
            return []
        info = await self.info()
        out: list[HandleStatus] = []
        for batch in _batches(handles, info.max_batch_handles):
            response = await self._gateway.GetHandleStatus(
                gateway_pb2.GetHandleStatusRequest(handles=batch)
            )
            if [s.handle for s in response.statuses] != batch:
                raise ResponseInvalid("statuses do not match the requested handles")
            out.extend(
                HandleStatus(
                    handle=bytes(s.handle),
                    stored=s.stored,
                    origin=_ORIGINS.get(s.origin) if s.stored else None,
                    task_id=bytes(s.task_id) or None,
                    created_at=s.created_at if s.stored else None,
                )
                for s in response.statuses
            )
        return out

    # The deadline is the poll loop's, so an in-flight GetHandleStatus is never cancelled
    # half-way (what asyncio.timeout would do): hence a plain `timeout` argument.
    async def wait_for_result(self, handle: bytes, timeout: float = 30.0) -> HandleStatus:  # noqa: ASYNC109
        """Poll until `handle` is stored (a task's result published); its status.

        A retryable error (the gateway restarting, say) is polled through until the
        deadline; any other is raised. Raises ResultTimeout after `timeout` seconds.
        """
        deadline = self._monotonic() + timeout
        while True:
            try:
                (status,) = await self.handle_status([handle])
            except NoxError as exc:
                if not exc.retryable or self._monotonic() >= deadline:
                    raise
            else:
                if status.stored:
                    return status
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise ResultTimeout(
                    f"handle 0x{handle.hex()} not stored after {timeout} seconds",
                    metadata={"handle": "0x" + handle.hex()},
                )
            await self._sleep(min(self.settings.poll_interval_seconds, remaining))

    # ------------------------------------------------------------------ decryption

    async def decrypt(
        self, handles: Sequence[bytes], *, user_key: UserSigner
    ) -> dict[bytes, Plaintext]:
        """Decrypt handles the user may view; values by handle (see `decrypt_detailed`)."""
        return (await self.decrypt_detailed(handles, user_key=user_key)).values

    async def decrypt_detailed(
        self, handles: Sequence[bytes], *, user_key: UserSigner
    ) -> Decryption:
        """Decrypt, and also report the KMS nodes whose answers were rejected.

        Raises the gateway's typed errors (AclDenied, HandleNotFound, ...), QuorumNotReached
        (naming the bad nodes) when fewer than t partials check out, DecryptionFailed when a
        ciphertext does not open under its handle.
        """
        if not handles:
            return Decryption(values={}, bad_nodes=())
        info = await self.info()
        public = await self.kms_public()
        wanted = list(dict.fromkeys(bytes(h) for h in handles))  # each handle once, in order
        for handle in wanted:
            if Handle.from_bytes(handle).chain_id != info.chain_id:
                raise WrongChain(
                    "handle is for another chain than the gateway's",
                    metadata={"handle": "0x" + handle.hex()},
                )
        values: dict[bytes, Plaintext] = {}
        bad: list[BadNode] = []
        for batch in _batches(wanted, info.max_batch_handles):
            try:
                batch_values, batch_bad = await self._decrypt_batch(batch, user_key, info, public)
            except QuorumNotReached:  # the KMS answered a gateway with another key?
                fresh = await self._restarted(info)
                if fresh.address == info.address:
                    raise
                info = fresh
                batch_values, batch_bad = await self._decrypt_batch(batch, user_key, info, public)
            values.update(batch_values)
            bad.extend(b for b in batch_bad if b not in bad)
        return Decryption(values=values, bad_nodes=tuple(bad))

    def _new_requester_key(self) -> RequesterKey:
        if self.settings.requester_key_kind == RequesterKeyKind.RSA_OAEP_SHA256:
            return RequesterKey.generate_rsa()
        return RequesterKey.generate_secp256k1()

    async def _decrypt_batch(
        self,
        handles: list[bytes],
        user: UserSigner,
        info: GatewayInfo,
        public: ThresholdPublicKey,
    ) -> tuple[dict[bytes, Plaintext], list[BadNode]]:
        requester = await asyncio.to_thread(self._new_requester_key)
        not_before = max(0, self._now() - self.settings.clock_skew_seconds)
        window = min(self.settings.authorization_seconds, info.max_authorization_seconds)
        auth = build_authorization(
            user,
            domain=info.domain,
            requester=requester.public,
            handles=handles,
            not_before=not_before,
            expires_at=not_before + window,
        )
        response = await self._gateway.Decrypt(
            gateway_pb2.DecryptRequest(authorization=auth, handles=handles)
        )
        if [c.handle for c in response.ciphertexts] != handles:
            raise ResponseInvalid("ciphertexts do not match the requested handles")
        if response.kms_epoch != public.epoch:
            raise PublicKeyMismatch("the KMS answered for another key epoch")
        return await asyncio.to_thread(self._open, response, requester, info, public, self._now())

    def _open(
        self,
        response: gateway_pb2.DecryptResponse,
        requester: RequesterKey,
        info: GatewayInfo,
        public: ThresholdPublicKey,
        now: int,
    ) -> tuple[dict[bytes, Plaintext], list[BadNode]]:
        targets = [(bytes(c.handle), bytes(c.ephemeral_public_key)) for c in response.ciphertexts]
        collected = collect_partials(
            response.kms_delegations,
            targets=targets,
            public=public,
            requester_kind=requester.public.kind,
            domain=info.domain,
            audience=info.address,
            registry=self._directory,
            now=now,
        )
        try:
            combinations = combine_targets(
                collected,
                targets=targets,
                public=public,
                requester_key=requester,
                stop_at_threshold=not self.settings.audit_all_partials,
            )
        except QuorumNotReached as exc:
            # Also list the answers refused whole (index 0: their envelope did not verify, so
            # the node index inside is not trusted).
            refused = [b.index for b in collected.rejected]
            raise QuorumNotReached(exc.threshold, exc.valid, [*exc.bad_nodes, *refused]) from None
        bad = list(collected.rejected)
        values: dict[bytes, Plaintext] = {}
        for stored, combination in zip(response.ciphertexts, combinations, strict=True):
            bad.extend(b for b in combination.bad_nodes if b not in bad)
            handle = bytes(stored.handle)
            ciphertext = ecies.Ciphertext(
                bytes(stored.ciphertext), bytes(stored.ephemeral_public_key), bytes(stored.nonce)
            )
            plaintext = ecies.decrypt_with_shared_point(
                combination.shared_point, ciphertext, handle
            )
            values[handle] = decode_plaintext(Handle.from_bytes(handle).value_type, plaintext)
        return values, bad

    # ------------------------------------------------------------------ public values

    async def public_decrypt(self, handle: bytes) -> PublicValue:
        """The value of a publicly decryptable handle and its gateway-signed proof."""
        (value,) = await self.public_decrypt_many([handle])
        return value

    async def public_decrypt_many(self, handles: Sequence[bytes]) -> list[PublicValue]:
        """`public_decrypt` for several handles, in order."""
        info = await self.info()
        out: list[PublicValue] = []
        for batch in _batches(handles, info.max_batch_handles):
            response = await self._gateway.PublicDecrypt(
                gateway_pb2.PublicDecryptRequest(handles=batch)
            )
            if [d.handle for d in response.decryptions] != batch:
                raise ResponseInvalid("public decryptions do not match the requested handles")
            try:
                checked = [_check_public(info, d) for d in response.decryptions]
            except UnexpectedSigner:
                fresh = await self._restarted(info)
                if fresh.address == info.address:
                    raise
                info = fresh
                checked = [_check_public(info, d) for d in response.decryptions]
            out.extend(checked)
        return out

    async def _restarted(self, info: GatewayInfo) -> GatewayInfo:
        """The gateway's info asked again (it may have restarted with a new enclave key),
        adopted only when the registry holds its address as an active gateway of the same
        deployment; otherwise `info` itself (and always without a registry)."""
        if self._registry is None:
            return info
        registry = self._registry
        try:
            fresh = await self.info(refresh=True)
            same = (fresh.chain_id, fresh.registry_address, fresh.compute_address)
            if same != (info.chain_id, info.registry_address, info.compute_address):
                raise ResponseInvalid("the gateway now serves another deployment")
            await asyncio.to_thread(
                registry.require, fresh.address, common_pb2.ROLE_GATEWAY, self._now()
            )
        except NoxError:
            self._info = info
            return info
        return fresh


def _check_public(info: GatewayInfo, decryption: decryption_pb2.PublicDecryption) -> PublicValue:
    handle, plaintext = bytes(decryption.handle), bytes(decryption.plaintext)
    proof = bytes(decryption.decryption_proof)
    if proof[65:] != plaintext:
        raise ResponseInvalid("the decryption proof does not carry the returned plaintext")
    digest = decryption_proof_digest(info.compute_domain, handle, plaintext)
    if recover_address(digest, proof[:65]) != info.address:
        raise UnexpectedSigner("the decryption proof is not signed by the gateway")
    value = decode_plaintext(Handle.from_bytes(handle).value_type, plaintext)
    return PublicValue(handle=handle, value=value, plaintext=plaintext, proof=proof)


def _batches(items: Sequence[bytes], size: int) -> list[list[bytes]]:
    listed = [bytes(i) for i in items]
    return [listed[i : i + size] for i in range(0, len(listed), size)]
