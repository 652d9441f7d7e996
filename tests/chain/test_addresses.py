"""`to_bytes20`: raw bytes pass through unchanged, strings are parsed; checked against
eth_utils' checksum round trip (the reference it used to go through for every input)."""

from __future__ import annotations

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from nox.chain.contracts import to_bytes20


@settings(max_examples=100)
@given(st.binary(min_size=20, max_size=20))
def test_bytes_and_hex_forms_agree_with_eth_utils(raw: bytes) -> None:
    reference = bytes.fromhex(to_checksum_address(raw)[2:])
    assert to_bytes20(raw) == reference == raw
    assert to_bytes20("0x" + raw.hex()) == reference
    assert to_bytes20(to_checksum_address(raw)) == reference


@pytest.mark.parametrize("size", [0, 19, 21, 32])
def test_raw_bytes_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        to_bytes20(b"\x01" * size)
