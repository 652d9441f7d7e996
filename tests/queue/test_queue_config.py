"""Settings validation, message ids against an independent keccak, reconnect backoff."""

from __future__ import annotations

import dataclasses

import pytest
from eth_hash.backends.pycryptodome import keccak256 as reference_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.queue import (
    InvalidQueueSettings,
    InvalidTransactionId,
    QueueSettings,
    normalize_tx_hash,
    transaction_msg_id,
)
from nox.queue.connection import backoff_delay


@settings(max_examples=100)
@given(chain_id=st.integers(0, 2**64), tx_hash=st.binary(min_size=32, max_size=32))
def test_msg_id_is_keccak_of_chain_and_hex_tx_hash(chain_id: int, tx_hash: bytes) -> None:
    expected = reference_keccak(f"{chain_id}:0x{tx_hash.hex()}".encode())
    assert transaction_msg_id(chain_id, tx_hash) == "0x" + expected.hex()
    # The same transaction written any way gives the same id.
    assert transaction_msg_id(chain_id, tx_hash.hex().upper()) == "0x" + expected.hex()
    assert transaction_msg_id(chain_id, "0X" + tx_hash.hex()) == "0x" + expected.hex()


@pytest.mark.parametrize("bad", [b"\x00" * 31, b"\x00" * 33, "0x1234", "zz" * 32, ""])
def test_tx_hash_must_be_32_bytes(bad: bytes | str) -> None:
    with pytest.raises(InvalidTransactionId):
        normalize_tx_hash(bad)


@pytest.mark.parametrize("chain_id", [-1, True])
def test_chain_id_must_be_a_non_negative_int(chain_id: int) -> None:
    with pytest.raises(InvalidTransactionId):
        transaction_msg_id(chain_id, b"\x00" * 32)
    with pytest.raises(InvalidTransactionId):
        QueueSettings().tx_subject(chain_id)


def test_subjects_per_chain() -> None:
    s = QueueSettings()
    assert s.tx_subject(421614) == "nox.tx.421614"
    assert s.dlq_subject(421614) == "nox.dlq.421614"
    assert s.tx_subjects == "nox.tx.*"
    assert s.chain_token_of("nox.tx.421614") == "421614"
    assert s.chain_token_of("nox.tx.1.extra") == "unknown"
    assert s.chain_token_of("elsewhere.1") == "unknown"


@pytest.mark.parametrize(
    "change",
    [
        {"subject_prefix": "nox.tx.>"},
        {"subject_prefix": "nox tx"},
        {"dlq_subject_prefix": "nox.tx"},
        {"dlq_subject_prefix": "nox.tx.dead"},
        {"dlq_stream": "NOX_TX"},
        {"stream": "NOX.TX"},
        {"durable": ""},
        {"servers": ()},
        {"ack_wait": 0},
        {"max_deliver": 0},
        {"max_msg_bytes": 0},
        {"duplicate_window": 10 * 86_400.0},
    ],
)
def test_unworkable_settings_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidQueueSettings):
        dataclasses.replace(QueueSettings(), **change)  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QueueSettings().ack_wait = 1.0  # type: ignore[misc]


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    s = QueueSettings(reconnect_base_delay=0.25, reconnect_max_delay=5.0)
    highest = [backoff_delay(n, s, rand=lambda: 1.0) for n in range(8)]
    lowest = [backoff_delay(n, s, rand=lambda: 0.0) for n in range(8)]
    assert highest == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert lowest == [h / 2 for h in highest]
    assert backoff_delay(10_000, s, rand=lambda: 1.0) == 5.0
