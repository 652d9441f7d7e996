"""The one self-registration of a service enclave in NoxRegistry (DESIGN §3), for every role.

Every service (runner, orchestrator, ingestor, gateway, KMS node) generates its enclave key in
its process at start and never writes it anywhere; this module registers that key and keeps
the registration fresh:

1. quote: REPORTDATA = enclave address ‖ keccak256(extData(role, operator, chain id,
   registry, endpoint)) ‖ zeros, from the service's quote provider;
2. register: the enclave signs a `registerWithPermit` permit, the operator account (the only
   one holding funds) sends the transaction and pays the gas;
3. refresh: `SelfRegistration.keep_registered` re-checks the record every `check_seconds`
   and registers again with a fresh quote once `refresh_fraction` of the registry's
   `maxAttestationAge` has passed (or `margin` seconds before expiry, when given);
4. readiness: `registered` is true only while the record is active for this role (and the
   service's own relying-party check, `self_check`, passes); a failed refresh keeps it true
   until the old registration expires. Services report gRPC health NOT_SERVING until then.

Each step is logged (`nox.registration`) with the enclave address, never the key.
`ChainRegistrar` is the chain side (`Registrar`); tests and the devnet may give another.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from web3.exceptions import Web3Exception

from attestation import AttestationError
from attestation.binding import ext_data, report_data_for
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.crypto.keys import EnclaveKey
from nox.errors import InvalidArgument, NoxError
from nox.rpc.logging import module_logger

__all__ = [
    "ChainRegistrar",
    "LockedDirectory",
    "QuoteProvider",
    "Registrar",
    "Registration",
    "SelfRegistration",
    "binding_report_data",
    "chain_self_registration",
]

_log = module_logger("nox.registration")

#: Roles by number, for log lines (nox.v1.Role).
ROLE_NAMES = {1: "orchestrator", 2: "runner", 3: "gateway", 4: "kms", 5: "ingestor"}


class QuoteProvider(Protocol):
    """Anything that returns a TDX quote carrying 64 bytes of report data."""

    def quote(self, report_data: bytes) -> bytes:
        """A quote whose REPORTDATA is `report_data`."""
        ...


@dataclass(frozen=True)
class Registration:
    """The on-chain record of an enclave, as far as its own service needs it."""

    role: int
    revoked: bool
    operator: bytes
    expires_at: int
    workload_id: bytes
    endpoint: str


class Registrar(Protocol):
    """Reads and writes one enclave's NoxRegistry entry."""

    @property
    def operator(self) -> bytes:
        """20-byte operator address bound into the quote and the registration."""
        ...

    @property
    def chain_id(self) -> int:
        """Chain id of the registry."""
        ...

    @property
    def registry_address(self) -> bytes:
        """20-byte NoxRegistry address."""
        ...

    def registration(self, enclave: bytes) -> Registration | None:
        """The on-chain record of `enclave`, or None when it never registered."""
        ...

    def register(self, quote: bytes, *, role: int, endpoint: str, now: int) -> None:
        """Register (or refresh) the enclave with `quote`; raises the contract's error."""
        ...

    def max_attestation_age(self) -> int:
        """The registry's registration lifetime, seconds."""
        ...


def binding_report_data(registrar: Registrar, enclave: bytes, role: int, endpoint: str) -> bytes:
    """REPORTDATA = enclave address ‖ keccak256(extData(role, operator, chain, registry,
    endpoint)) ‖ zeros (DESIGN §3)."""
    ext = ext_data(
        role, registrar.operator, registrar.chain_id, registrar.registry_address, endpoint
    )
    return report_data_for(enclave, ext)


class ChainRegistrar:
    """`Registrar` over NoxRegistry: the enclave signs a permit, the operator pays.

    `lock`, when given, is held around every chain call (the client is shared with a
    registry view that is not meant for concurrent use)."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        enclave: EnclaveKey,
        operator: LocalAccount,
        lock: AbstractContextManager[Any] | None = None,
        permit_ttl: int = 600,
    ) -> None:
        self._client = client
        self._enclave = enclave
        self._operator = operator
        self._lock = lock if lock is not None else threading.Lock()
        self._permit_ttl = permit_ttl

    def __repr__(self) -> str:
        return f"ChainRegistrar(registry={self._client.address}, operator={self._operator.address})"

    @property
    def operator(self) -> bytes:
        return to_bytes20(self._operator.address)

    @property
    def chain_id(self) -> int:
        return self._client.backend.chain_id

    @property
    def registry_address(self) -> bytes:
        return to_bytes20(self._client.address)

    def registration(self, enclave: bytes) -> Registration | None:
        with self._lock:
            record = self._client.node(enclave)
        if record is None:
            return None
        return Registration(
            role=record.role,
            revoked=record.revoked,
            operator=record.operator,
            expires_at=record.expires_at,
            workload_id=record.workload_id,
            endpoint=record.endpoint,
        )

    def register(self, quote: bytes, *, role: int, endpoint: str, now: int) -> None:
        with self._lock:
            self._client.register_with_permit(
                quote,
                role,
                self._operator.address,
                endpoint,
                enclave=self._enclave.address,
                sign_digest=self._enclave.sign_digest,
                deadline=now + self._permit_ttl,
                sender=self._operator,
            )

    def max_attestation_age(self) -> int:
        with self._lock:
            return self._client.max_attestation_age()


#: What a registration attempt may fail with (all reported, none fatal to the service).
_FAILURES = (NoxError, AttestationError, Web3Exception, OSError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NoxError):
        return exc.reason
    if isinstance(exc, AttestationError):
        return "ATTESTATION_FAILED"
    return "CHAIN_UNAVAILABLE"


def _record_reason(record: Registration | None, role: int, now: int) -> str:
    """The registry's reason why `record` is not an active registration of `role` ("" if it is)."""
    if record is None:
        return "SIGNER_NOT_REGISTERED"
    if record.role != role:
        return "ROLE_MISMATCH"
    if record.revoked:
        return "REVOKED"
    if now >= record.expires_at:
        return "REGISTRATION_EXPIRED"
    return ""


class SelfRegistration:
    """Registers one in-memory enclave key in one role and keeps it registered.

    `quote` is the service's quote provider (`QuoteProvider.quote`). `self_check(address,
    role, now)`, when given, is the service's relying-party check of itself (e.g.
    `RegistryView.require`: workload allowed, quote verifies); it must pass too. `on_register`
    runs after each successful registration (e.g. refresh a registry view). With
    `auto_register` off the registration is only checked (a runner registered by hand).
    """

    def __init__(
        self,
        registrar: Registrar,
        *,
        enclave: bytes,
        role: int,
        endpoint: str,
        quote: Callable[[bytes], bytes],
        refresh_fraction: float = 0.5,
        margin: int | None = None,
        check_seconds: float = 30.0,
        retry_seconds: float = 5.0,
        auto_register: bool = True,
        self_check: Callable[[bytes, int, int], object] | None = None,
        on_register: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        logger: Any | None = None,
    ) -> None:
        if not 0 < refresh_fraction < 1:
            raise ValueError("refresh_fraction must be between 0 and 1")
        self._registrar = registrar
        self.enclave = bytes(enclave)
        self.role = role
        self.endpoint = endpoint
        self._quote = quote
        self._fraction = refresh_fraction
        self._margin = margin
        self.check_seconds = check_seconds
        self.retry_seconds = min(retry_seconds, check_seconds)
        self._auto = auto_register
        self._self_check = self_check
        self._on_register = on_register
        self._clock = clock
        self._logger = logger if logger is not None else _log
        self._max_age: int | None = None
        #: The last record read (None before the first check or when never registered).
        self.record: Registration | None = None
        #: Whether this enclave is registered, active and (self-)checked right now.
        self.registered = False
        #: Why it is not ("" when it is): a registry reason or the failure's reason.
        self.reason = "NOT_CHECKED"

    def __repr__(self) -> str:
        return (
            f"SelfRegistration(enclave=0x{self.enclave.hex()}, role={self.role}, "
            f"registered={self.registered})"
        )

    # ------------------------------------------------------------------ steps

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        """Log `event` with this enclave's address and role (never its key)."""
        role = ROLE_NAMES.get(self.role, str(self.role))
        log = getattr(self._logger, level)
        log(event, enclave="0x" + self.enclave.hex(), role=role, **fields)

    def _renew_margin(self) -> int:
        if self._margin is not None:
            return self._margin
        if self._max_age is None:
            self._max_age = int(self._registrar.max_attestation_age())
        return int(self._max_age * (1 - self._fraction))

    def register_now(self) -> Registration | None:
        """Quote and register (blocking); raises the provider's or the contract's error."""
        now = int(self._clock())
        report_data = binding_report_data(self._registrar, self.enclave, self.role, self.endpoint)
        quote = self._quote(report_data)
        self._emit("info", "registration.quoted", endpoint=self.endpoint, quote_bytes=len(quote))
        self._registrar.register(quote, role=self.role, endpoint=self.endpoint, now=now)
        record = self._registrar.registration(self.enclave)
        self._max_age = None  # governance may have changed it; read again at the next renewal
        if self._on_register is not None:
            self._on_register()
        self._emit(
            "info",
            "registration.registered",
            expires_at=record.expires_at if record is not None else 0,
            operator="0x" + self._registrar.operator.hex(),
        )
        return record

    def check(self) -> bool:
        """Read the record, register again when due (or missing), run the self-check; sets
        and returns `registered`. Blocking; never raises what a registration can fail with."""
        now = int(self._clock())
        try:
            record = self._registrar.registration(self.enclave)
            due = record is None or (
                not record.revoked and record.expires_at - now <= self._renew_margin()
            )
            if due and self._auto:
                try:
                    record = self.register_now()
                except _FAILURES as exc:
                    self._emit(
                        "warning",
                        "registration.failed",
                        reason=_reason(exc),
                        error=type(exc).__name__,
                        detail=str(exc)[:300],
                    )
                    if _record_reason(record, self.role, now):
                        raise  # nothing valid to fall back on
            self.record = record
            if self._self_check is not None:
                self._self_check(self.enclave, self.role, now)
            elif reason := _record_reason(record, self.role, now):
                self._set(False, reason)
                return False
        except _FAILURES as exc:
            self._set(False, _reason(exc))
            return False
        self._set(True, "")
        return True

    def _set(self, registered: bool, reason: str) -> None:
        if registered != self.registered or reason != self.reason:
            expires = self.record.expires_at if self.record is not None else 0
            self._emit(
                "info",
                "registration.state",
                registered=registered,
                reason=reason,
                expires_at=expires,
            )
        self.registered = registered
        self.reason = reason

    def still_registered(self) -> bool:
        """`registered`, turned off once the last record read has expired (no chain call)."""
        if self.registered and self.record is not None and self.record.expires_at <= self._clock():
            self._set(False, "REGISTRATION_EXPIRED")
        return self.registered

    async def keep_registered(
        self,
        stop: asyncio.Event,
        *,
        on_change: Callable[[bool], Any] | None = None,
    ) -> None:
        """`check` now and every `check_seconds` (every `retry_seconds` while not registered)
        until `stop`; `on_change(registered)` (sync or async) after every check, e.g. to set
        gRPC health."""
        while not stop.is_set():
            registered = await asyncio.to_thread(self.check)
            if on_change is not None:
                result = on_change(registered)
                if asyncio.iscoroutine(result):
                    await result
            wait = self.check_seconds if registered else self.retry_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)


def chain_self_registration(
    *,
    chain_rpc_url: str,
    registry_address: str,
    operator_key_file: Path,
    enclave: EnclaveKey,
    role: int,
    endpoint: str,
    quote: Callable[[bytes], bytes],
    refresh_fraction: float = 0.5,
    check_seconds: float = 30.0,
    self_check: Callable[[bytes, int, int], object] | None = None,
    on_register: Callable[[], None] | None = None,
) -> SelfRegistration:
    """A service's `SelfRegistration` over its own JSON-RPC connection: the operator account
    of `operator_key_file` (a hex private key) sends the transactions and pays the gas."""
    from nox.chain.backend import RpcChain

    try:
        operator_key = operator_key_file.read_text().strip()
    except OSError:
        raise InvalidArgument(f"{operator_key_file.name}: operator key file unreadable") from None
    backend = RpcChain(chain_rpc_url, private_keys=[operator_key])
    registrar = ChainRegistrar(
        RegistryClient(backend, registry_address), enclave=enclave, operator=backend.accounts[0]
    )
    return SelfRegistration(
        registrar,
        enclave=enclave.address,
        role=role,
        endpoint=endpoint,
        quote=quote,
        refresh_fraction=refresh_fraction,
        check_seconds=check_seconds,
        self_check=self_check,
        on_register=on_register,
    )


class LockedDirectory:
    """A registry view behind a lock: `RegistryView`'s cache (and an in-process EVM) is not
    meant for concurrent use, and services check peers from several worker threads."""

    def __init__(self, view: Any, lock: threading.Lock) -> None:
        self._view = view
        self._lock = lock

    def require(self, address: bytes, role: int, now: int) -> object:
        with self._lock:
            return self._view.require(address, role, now)

    def require_producer(self, address: bytes, role: int, now: int) -> object:
        with self._lock:
            return self._view.require_producer(address, role, now)

    def refresh(self) -> None:
        """Re-read the registry now (after this service registered), when the view can."""
        refresh = getattr(self._view, "refresh", None)
        if callable(refresh):
            with self._lock:
                refresh()
