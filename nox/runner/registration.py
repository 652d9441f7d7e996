"""A runner's own registration: quote with the DESIGN §3 binding, NoxRegistry record, renewal.

The agent talks to the registry through the small `Registrar` interface; `ChainRegistrar`
implements it over `nox.chain`'s `RegistryClient` with `registerWithPermit`: the enclave key
signs the permit, the operator's account pays the gas, so an enclave key never needs funds.
Quotes come from a `QuoteProvider` (`attestation.providers`: configfs-tsm on TDX hardware,
simulated TDX elsewhere).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from attestation.binding import ext_data, report_data_for
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.crypto.keys import EnclaveKey
from nox.v1 import common_pb2

ROLE_RUNNER = common_pb2.ROLE_RUNNER


class QuoteProvider(Protocol):
    """Anything that returns a TDX quote carrying 64 bytes of report data."""

    def quote(self, report_data: bytes) -> bytes:
        """A quote whose REPORTDATA is `report_data`."""
        ...


@dataclass(frozen=True)
class Registration:
    """The on-chain record of an enclave, as far as the runner needs it."""

    role: int
    revoked: bool
    operator: bytes
    expires_at: int
    workload_id: bytes
    endpoint: str


class Registrar(Protocol):
    """Reads and writes this runner's NoxRegistry entry."""

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

    def register(self, quote: bytes, *, endpoint: str, now: int) -> None:
        """Register (or refresh) the enclave with `quote`; raises the contract's error."""
        ...


def binding_report_data(registrar: Registrar, enclave: bytes, endpoint: str) -> bytes:
    """REPORTDATA = enclave address ‖ keccak256(extData(RUNNER, operator, chain, registry,
    endpoint)) ‖ zeros (DESIGN §3)."""
    ext = ext_data(
        ROLE_RUNNER, registrar.operator, registrar.chain_id, registrar.registry_address, endpoint
    )
    return report_data_for(enclave, ext)


class ChainRegistrar:
    """`Registrar` over NoxRegistry: the enclave signs a permit, the operator pays."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        enclave: EnclaveKey,
        operator: LocalAccount,
        permit_ttl: int = 600,
    ) -> None:
        self._client = client
        self._enclave = enclave
        self._operator = operator
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

    def register(self, quote: bytes, *, endpoint: str, now: int) -> None:
        self._client.register_with_permit(
            quote,
            ROLE_RUNNER,
            self._operator.address,
            endpoint,
            enclave=self._enclave.address,
            sign_digest=self._enclave.sign_digest,
            deadline=now + self._permit_ttl,
            sender=self._operator,
        )


class LockedDirectory:
    """A registry view behind a lock: `RegistryView`'s cache (and an in-process EVM) is not
    meant for concurrent use, and the runner checks peers from several worker threads."""

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
        """Re-read the registry now (after this runner registered), when the view can."""
        refresh = getattr(self._view, "refresh", None)
        if callable(refresh):
            with self._lock:
                refresh()


class LockedRegistrar:
    """A `Registrar` behind the same lock as the directory (they share one chain client)."""

    def __init__(self, registrar: Registrar, lock: threading.Lock) -> None:
        self._registrar = registrar
        self._lock = lock

    @property
    def operator(self) -> bytes:
        return self._registrar.operator

    @property
    def chain_id(self) -> int:
        return self._registrar.chain_id

    @property
    def registry_address(self) -> bytes:
        return self._registrar.registry_address

    def registration(self, enclave: bytes) -> Registration | None:
        with self._lock:
            return self._registrar.registration(enclave)

    def register(self, quote: bytes, *, endpoint: str, now: int) -> None:
        with self._lock:
            self._registrar.register(quote, endpoint=endpoint, now=now)
