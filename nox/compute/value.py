"""A typed plaintext: a ValueType and a Python int (bool for the bool type).

Integers are held as their mathematical value: uintN in [0, 2^N−1], intN in
[−2^(N−1), 2^(N−1)−1]; an address or a bytesN as the unsigned big-endian number of its
bytes (only selection and (in)equality apply to those). The byte form (big-endian, two's
complement) is `nox.handles`' business. A Value is a plaintext, so its repr hides the number.
"""

from __future__ import annotations

from typing import NamedTuple

from nox.compute.exceptions import UnsupportedOperation, ValueOutOfRange
from nox.handles import ValueType, decode_plaintext, encode_plaintext

_WORD = 32
_COMPUTABLE = frozenset({"bool", "uint", "int", "address", "fixed_bytes"})


class Value(NamedTuple):
    """A plaintext value of a computable type (bool, uintN, intN, address, bytesN).

    The plain constructor does not check the range (the engine's own outputs are in range by
    construction); use `Value.of` for values from elsewhere. The engine checks operands anyway.
    """

    type: ValueType
    value: int

    def __repr__(self) -> str:
        return f"Value(type={self.type.code}, value=<hidden>)"

    @classmethod
    def of(cls, vt: ValueType, value: int) -> Value:
        """A checked Value: the type must be computable and the number must fit it."""
        check_computable(vt)
        if isinstance(value, bool):
            value = int(value)
        if not vt.min_value <= value <= vt.max_value:
            raise ValueOutOfRange(f"value does not fit type {vt.code}")
        return cls(vt, bool(value) if vt.kind == "bool" else value)

    @classmethod
    def from_plaintext(cls, vt: ValueType, data: bytes) -> Value:
        """Decode a stored plaintext (exact byte size, DESIGN §5)."""
        check_computable(vt)
        decoded = decode_plaintext(vt, data)
        if isinstance(decoded, bytes):  # address, bytesN
            return cls(vt, int.from_bytes(decoded, "big"))
        return cls.of(vt, decoded)

    @classmethod
    def from_word(cls, vt: ValueType, word: bytes) -> Value:
        """Decode the 32-byte `value` of a PlaintextToEncrypted event.

        Numbers, bools and addresses sit in the low bytes; the bytes above must be zero, or,
        for intN, may instead be the sign extension (so both `bytes32(uint256(int256(x)))`
        and the reference library's `bytes32(uint256(uint16(x)))` read as x). A bytesN sits
        in the high N bytes (Solidity's `bytes32(b)`), the rest zero. Anything else does not
        fit the type and raises ValueOutOfRange (NoxCompute refuses such a value too).
        """
        check_computable(vt)
        if len(word) != _WORD:
            raise ValueOutOfRange(f"a plaintext word is {_WORD} bytes, got {len(word)}")
        raw = int.from_bytes(word, "big")
        kind = vt.kind
        if kind == "bool":
            if raw > 1:
                raise ValueOutOfRange("a bool word must be 0 or 1")
            return cls(vt, raw == 1)
        bits = vt.bits
        if kind == "fixed_bytes":
            if raw & ((1 << (256 - bits)) - 1):
                raise ValueOutOfRange(f"word does not fit type {vt.code}")
            return cls(vt, raw >> (256 - bits))
        low = raw & ((1 << bits) - 1)
        high = raw >> bits
        if kind != "int":  # uint, address
            if high:
                raise ValueOutOfRange(f"word does not fit type {vt.code}")
            return cls(vt, low)
        value = low - (1 << bits) if low >> (bits - 1) else low
        sign_extension = (1 << (256 - bits)) - 1 if value < 0 else 0
        if high not in (0, sign_extension):
            raise ValueOutOfRange(f"word does not fit type {vt.code}")
        return cls(vt, value)

    def to_plaintext(self) -> bytes:
        """The stored form: big-endian, exactly the type's byte size, two's complement."""
        if self.type.kind == "fixed_bytes":
            return encode_plaintext(self.type, self.value.to_bytes(self.type.byte_size, "big"))
        return encode_plaintext(self.type, self.value)


def check_computable(vt: ValueType) -> None:
    """Raise UnsupportedOperation unless the engine computes on this type."""
    if vt.kind not in _COMPUTABLE:
        raise UnsupportedOperation(f"type {vt.code} ({vt.kind}) is not computable")
