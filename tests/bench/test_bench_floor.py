"""bench/_floor.py: the crypto floor does the work its table says, and checks its result.

No timing is asserted. What is checked: one floor task decrypts the operands it was given
(so the floor cannot be made faster by skipping work that produces a wrong answer), a
tampered partial or proof is refused by the same path, the breakdown covers every kind of
work the table lists, and the figures are consistent with each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _floor import _Floor, floor_operations, measure_floor

from nox.crypto.delegation import SealedPartial
from nox.crypto.threshold_exceptions import QuorumNotReached


def test_one_floor_task_decrypts_its_operands_and_times_every_kind_of_work() -> None:
    floor = _Floor()
    floor.task()
    assert set(floor.times) == {
        "sign envelope",
        "verify envelope",
        "requester key",
        "KMS: partial, DLEQ proof, seal",
        "runner: open, verify DLEQ, combine",
        "AES-GCM decrypt operand",
        "ECIES encrypt result + value tag",
    }
    # the table's counts are the protocol's: 11 signatures, 18 verifications, t x operands
    counts = {name: count for name, count, _ in floor_operations()}
    assert counts["sign envelope"] == 11
    assert counts["verify envelope"] == 18
    assert counts["partial + DLEQ proof"] == 2 * 3


def test_a_tampered_partial_fails_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    import _floor

    real = _floor.make_sealed_partial

    def lying(*args: object, **kwargs: object) -> SealedPartial:
        good = real(*args, **kwargs)  # type: ignore[arg-type]
        sealed = bytes([good.sealed[0]]) + bytes([good.sealed[1] ^ 1]) + good.sealed[2:]
        return SealedPartial(good.index, sealed, good.proof, good.context)

    monkeypatch.setattr(_floor, "make_sealed_partial", lying)
    with pytest.raises(QuorumNotReached):
        _Floor().task()


def test_measure_floor_figures_agree() -> None:
    result = measure_floor(0.2, pin_core=True)
    assert result.tasks >= 3
    assert result.tasks_per_s == pytest.approx(result.tasks / result.seconds)
    assert result.ms_per_task == pytest.approx(1000 / result.tasks_per_s)
    # the breakdown is the whole task: its parts add up to (nearly) the time per task
    assert sum(result.breakdown_ms.values()) == pytest.approx(result.ms_per_task, rel=0.2)
