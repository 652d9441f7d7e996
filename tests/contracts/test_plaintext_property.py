"""Differential property: NoxCompute accepts a PlaintextToEncrypted word exactly when it is the
canonical ABI word of a value of the type, as nox.handles' value ranges define them."""

from __future__ import annotations

import pytest
from contracts_support import Net
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nox.chain.exceptions import ContractReverted
from nox.handles import ValueType

TYPES = [c for c in range(100) if c not in (2, 3)]


def _canonical(vt: ValueType, word: int) -> bool:
    if vt.kind == "fixed_bytes":
        return word % (1 << (256 - 8 * vt.byte_size)) == 0
    value = word - (1 << 256) if vt.is_signed and word >> 255 else word
    return vt.min_value <= value <= vt.max_value


def _words() -> st.SearchStrategy[int]:
    small = st.integers(0, 2**20)
    edges = st.sampled_from([(1 << b) + d for b in range(0, 256, 8) for d in (-1, 0)])
    negative = st.integers(1, 2**20).map(lambda v: 2**256 - v)
    top = st.integers(0, 2**32 - 1).map(lambda v: v << 224)
    return st.one_of(small, edges, negative, top, st.integers(0, 2**256 - 1))


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.sampled_from(TYPES), word=_words())
@example(code=36, word=2**256 - 128)  # int8 MIN: canonical
@example(code=36, word=2**256 - 129)  # below int8 MIN
@example(code=68, word=0xFF << 248)  # bytes1 0xff
@example(code=1, word=2**160)
def test_plaintext_acceptance_matches_python_ranges(net: Net, code: int, word: int) -> None:
    vt = ValueType.from_code(code)
    call = net.compute.fn.plaintextToEncrypted(word.to_bytes(32, "big"), code)
    if _canonical(vt, word):
        net.backend.call(call)  # accepted
    else:
        with pytest.raises(ContractReverted, match=r": PlaintextOutOfRange\("):
            net.backend.call(call)
