"""Self-registration of a service enclave (orchestrator, ingestor) in NoxRegistry (DESIGN §3).

The enclave key is generated in the process; its quote binds REPORTDATA = enclave address ‖
keccak256(extData(role, operator, chain id, registry, endpoint)); the enclave signs a
register permit and the operator account pays the gas. `keep_registered` re-registers with a
fresh quote before the registration expires, and reports readiness meanwhile.
(The runner has its own registrar in `nox.runner.registration`; a shared one belongs in
`nox.chain` once both settle.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

from eth_account.signers.local import LocalAccount
from web3.exceptions import Web3Exception

from attestation import AttestationError
from attestation.binding import ext_data, report_data_for
from nox.chain.contracts import RegistryClient, to_bytes20
from nox.crypto.keys import EnclaveKey
from nox.errors import NoxError
from nox.rpc.logging import module_logger

__all__ = ["SelfRegistration"]

_log = module_logger("nox.registration")

QuoteFn = Callable[[bytes], bytes]


class SelfRegistration:
    """Registers one enclave in one role and keeps the registration fresh."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        enclave: EnclaveKey,
        operator: LocalAccount,
        role: int,
        endpoint: str,
        quote: QuoteFn,
        lock: threading.Lock,
        margin: int = 3600,
        permit_ttl: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._enclave = enclave
        self._operator = operator
        self._role = role
        self._endpoint = endpoint
        self._quote = quote
        self._lock = lock
        self._margin = margin
        self._permit_ttl = permit_ttl
        self._clock = clock
        self.ready = False

    def register_now(self) -> None:
        """Quote and register (blocking); raises the contract's or the provider's error."""
        with self._lock:
            ext = ext_data(
                self._role,
                to_bytes20(self._operator.address),
                self._client.backend.chain_id,
                to_bytes20(self._client.address),
                self._endpoint,
            )
            quote = self._quote(report_data_for(self._enclave.address, ext))
            self._client.register_with_permit(
                quote,
                self._role,
                self._operator.address,
                self._endpoint,
                enclave=self._enclave.address,
                sign_digest=self._enclave.sign_digest,
                deadline=int(self._clock()) + self._permit_ttl,
                sender=self._operator,
            )

    def _expires_at(self) -> int:
        with self._lock:
            node = self._client.node(self._enclave.address)
        if node is None or node.revoked or node.role != self._role:
            return 0
        return int(node.expires_at)

    async def keep_registered(self, stop: asyncio.Event, check_every: float = 30.0) -> None:
        """Register, then re-register `margin` seconds before expiry, until `stop`."""
        while not stop.is_set():
            try:
                expires = await asyncio.to_thread(self._expires_at)
                if expires - self._clock() < self._margin:
                    await asyncio.to_thread(self.register_now)
                    expires = await asyncio.to_thread(self._expires_at)
                self.ready = expires > self._clock()
            except (NoxError, AttestationError, Web3Exception, OSError) as err:
                self.ready = False
                _log.warning("registration_failed", error=type(err).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=check_every)
