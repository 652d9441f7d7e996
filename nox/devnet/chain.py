"""The devnet's one chain, shared by every in-process service.

An embedded EVM lives in this process only, so every service of the single-process devnet
gets the same backend object. py-evm (through eth-tester) and `RegistryView`'s cache are not
safe to use from several threads at once, and the services call the chain from worker
threads: `SharedChain` serializes every JSON-RPC request of the backend behind one
re-entrant lock, and hands out `SharedViews`, the registry view and the ACL behind that same
lock, shaped as every service's `NodeDirectory` / `AclView` protocol wants them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount

from attestation.binding import ext_data, report_data_for
from attestation.providers.simulated import SimulatedTdx
from nox.attest.bootstrap import build_attestation
from nox.attest.settings import AttestationSettings
from nox.chain.backend import ChainBackend
from nox.chain.contracts import AclClient, RegistryClient, to_bytes20
from nox.chain.deploy import Deployment
from nox.chain.registry import Node, RegistryView
from nox.crypto.eip712 import Domain
from nox.crypto.keys import EnclaveKey


def serialize_requests(backend: ChainBackend, lock: threading.RLock) -> None:
    """Make every JSON-RPC request of `backend` hold `lock` (py-evm is not thread-safe)."""
    provider: Any = backend.w3.provider
    inner: Callable[..., Any] = provider.make_request

    def make_request(method: Any, params: Any) -> Any:
        with lock:
            return inner(method, params)

    provider.make_request = make_request


class SharedViews:
    """The registry view and the ACL behind the chain's lock (one cache for all services)."""

    def __init__(self, view: RegistryView, acl: AclClient, lock: threading.RLock) -> None:
        self._view = view
        self._acl = acl
        self._lock = lock

    def require(self, address: bytes, role: int, now: int) -> Node:
        with self._lock:
            return self._view.require(address, role, now)

    def active(self, role: int, now: int) -> Sequence[Node]:
        with self._lock:
            return list(self._view.active(role, now))

    def refresh(self) -> None:
        with self._lock:
            self._view.refresh()

    def is_viewer(self, handle: bytes, account: bytes) -> bool:
        with self._lock:
            return self._acl.is_viewer(handle, account)

    def is_publicly_decryptable(self, handle: bytes) -> bool:
        with self._lock:
            return self._acl.is_publicly_decryptable(handle)


class SharedChain:
    """The backend, its deployment, the dev TDX and the lock every service shares."""

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        sim: SimulatedTdx,
        *,
        operator: LocalAccount,
        governance: LocalAccount,
    ) -> None:
        self.lock = threading.RLock()
        self.backend = backend
        self.deployment = deployment
        self.sim = sim
        self.operator = operator
        self.governance = governance
        serialize_requests(backend, self.lock)
        self.registry = RegistryClient(backend, deployment.registry)
        self.acl = AclClient(backend, deployment.acl)
        # The dev root is trusted here, explicitly, and nowhere by default (DESIGN §3).
        self.attestation = build_attestation(AttestationSettings(), simulated=sim)
        self.view: RegistryView = self.attestation.registry_view(
            self.registry, refresh_interval=0.5
        )
        self.views = SharedViews(self.view, self.acl, self.lock)
        self.domain = Domain(
            chain_id=backend.chain_id, verifying_contract=to_bytes20(deployment.registry)
        )

    @property
    def chain_id(self) -> int:
        return self.backend.chain_id

    @property
    def registry_address(self) -> bytes:
        return to_bytes20(self.deployment.registry)

    @property
    def compute_address(self) -> bytes:
        return to_bytes20(self.deployment.compute)

    @property
    def acl_address(self) -> bytes:
        return to_bytes20(self.deployment.acl)

    def register(self, key: EnclaveKey, role: int, endpoint: str) -> bytes:
        """Register `key` in `role` with a simulated quote bound as DESIGN §3 says; the
        operator pays gas and the enclave signs a permit. Returns the quote."""
        ext = ext_data(
            role, to_bytes20(self.operator.address), self.chain_id, self.registry_address, endpoint
        )
        quote = self.sim.quote(report_data_for(key.address, ext))
        with self.lock:
            self.registry.register_with_permit(
                quote,
                role,
                self.operator.address,
                endpoint,
                enclave=key.address,
                sign_digest=key.sign_digest,
                deadline=self.backend.now() + 600,
                sender=self.operator,
            )
            self.view.refresh()
        return quote

    def now(self) -> int:
        with self.lock:
            return self.backend.now()
