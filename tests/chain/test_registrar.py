"""`nox.chain.registrar.SelfRegistration`, every service's own registration, on the embedded
EVM: registration with an enclave-signed permit (the operator pays), NOT registered while the
registry refuses it (with the contract's reason in a log line), refresh once the configured
fraction of the max attestation age has passed, a failed refresh tolerated until expiry, and
the enclave key in no log line."""

from __future__ import annotations

from typing import Any

import pytest
from contracts_support import WORKLOAD_ID, Net, make_net

from attestation.exceptions import ProviderError
from attestation.providers.simulated import SimulatedTdx
from nox.chain.backend import EmbeddedChain
from nox.chain.contracts import to_bytes20
from nox.chain.registrar import ChainRegistrar, SelfRegistration
from nox.crypto.keys import EnclaveKey

GATEWAY, KMS = 3, 4


class Lines:
    """A logger that keeps (level, event, fields) for the test to read."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


@pytest.fixture
def net() -> Net:
    return make_net(EmbeddedChain(), SimulatedTdx.generate())


def _registration(
    net: Net, key: EnclaveKey, role: int, log: Lines, quote: Any = None
) -> SelfRegistration:
    registrar = ChainRegistrar(net.registry, enclave=key, operator=net.backend.accounts[1])
    return SelfRegistration(
        registrar,
        enclave=key.address,
        role=role,
        endpoint="127.0.0.1:7000",
        quote=quote or net.sim.quote,
        refresh_fraction=0.5,
        clock=net.backend.now,
        logger=log,
    )


def test_not_registered_while_the_workload_is_not_allowed_then_registered(net: Net) -> None:
    key, log = EnclaveKey.generate(), Lines()
    registration = _registration(net, key, GATEWAY, log)

    assert registration.check() is False
    assert registration.registered is False
    assert registration.reason == "CONTRACT_REVERTED"
    failed = [f for _, event, f in log.lines if event == "registration.failed"]
    assert failed
    assert "WorkloadNotAllowed" in failed[0]["detail"]  # the log line says why
    assert net.registry.node(key.address) is None

    net.registry.allow_workload(GATEWAY, WORKLOAD_ID, net.owner)
    assert registration.check() is True
    assert registration.reason == ""
    record = net.registry.node(key.address)
    assert record is not None
    assert record.role == GATEWAY
    assert record.operator == to_bytes20(net.backend.accounts[1].address)  # the operator paid
    assert record.endpoint == "127.0.0.1:7000"
    assert "registration.registered" in log.events()
    secret = key.secret_bytes()
    assert secret.hex() not in repr(log.lines)
    assert secret not in repr(log.lines).encode()


def test_refreshes_after_the_fraction_of_the_max_age_and_survives_a_failed_refresh(
    net: Net,
) -> None:
    net.registry.allow_workload(KMS, WORKLOAD_ID, net.owner)
    key, log = EnclaveKey.generate(), Lines()
    quotes: list[bytes] = []
    broken = [False]

    def quote(report_data: bytes) -> bytes:
        if broken[0]:
            raise ProviderError("configfs", "the quote provider is down")
        quotes.append(report_data)
        return net.sim.quote(report_data)

    registration = _registration(net, key, KMS, log, quote)
    assert registration.check() is True
    first = net.registry.node(key.address)
    assert first is not None
    max_age = net.registry.max_attestation_age()

    net.backend.advance_time(int(max_age * 0.4))  # not due yet: no new registration
    assert registration.check() is True
    assert len(quotes) == 1

    net.backend.advance_time(int(max_age * 0.2))  # past half the max age: registers again
    assert registration.check() is True
    assert len(quotes) == 2
    second = net.registry.node(key.address)
    assert second is not None
    assert second.expires_at > first.expires_at

    # the refresh fails, but the registration is still valid: still registered
    broken[0] = True
    net.backend.advance_time(int(max_age * 0.6))
    assert registration.check() is True
    assert "registration.failed" in log.events()
    # ... until it expires: NOT registered, with the failed refresh's reason
    net.backend.advance_time(int(max_age * 0.5))
    assert registration.check() is False
    assert registration.reason == "ATTESTATION_FAILED"
    assert registration.still_registered() is False
