"""Handles, value types and plaintext encoding (DESIGN §5).

A handle is 32 bytes, seed layout:

    prehandle[0:26] ‖ chainId[26:30] (uint32 big-endian) ‖ type[30] ‖ version[31] = 0x00

Type codes: bool 0, address 1, bytes 2, string 3, uintN 3 + N/8 (4..35), intN 35 + N/8
(36..67), bytesN 67 + N (68..99); codes above 99 are unknown.

Plaintexts are big-endian, exactly the type's byte size: bool one byte 0x00/0x01, address
20 bytes, uintN/intN N/8 bytes (two's complement for intN), bytesN N bytes. The dynamic
types have no fixed size: a `bytes` plaintext is the raw bytes and a `string` plaintext its
UTF-8 encoding, each at most MAX_DYNAMIC_SIZE bytes (decoding a string checks the UTF-8 and
returns the bytes). No operation computes on them; they can be stored and decrypted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from nox.crypto.hashing import keccak256
from nox.crypto.tags import TagKey
from nox.errors import InvalidArgument

__all__ = [
    "ADDRESS",
    "BOOL",
    "BYTES",
    "HANDLE_SIZE",
    "HANDLE_VERSION",
    "MAX_DYNAMIC_SIZE",
    "PREHANDLE_SIZE",
    "STRING",
    "Handle",
    "InvalidHandle",
    "InvalidPlaintext",
    "Kind",
    "Plaintext",
    "UnknownValueType",
    "ValueType",
    "decode_plaintext",
    "encode_plaintext",
    "fixed_bytes",
    "int_",
    "new_input_handle",
    "result_handle",
    "uint",
    "value_tag",
]

HANDLE_SIZE = 32
PREHANDLE_SIZE = 26
HANDLE_VERSION = 0
MAX_TYPE_CODE = 99
MAX_DYNAMIC_SIZE = 1024 * 1024
"""Largest `bytes`/`string` plaintext (1 MiB); a gateway may set a lower request limit."""

Kind = Literal["bool", "address", "bytes", "string", "uint", "int", "fixed_bytes"]
Plaintext = int | bool | bytes


class InvalidHandle(InvalidArgument):
    """Bytes that are not a well-formed handle: length, version, type code or chain id."""

    reason = "INVALID_HANDLE"


class UnknownValueType(InvalidArgument):
    """A type code outside 0..99, or a width that has no Solidity type."""

    reason = "UNKNOWN_VALUE_TYPE"


class InvalidPlaintext(InvalidArgument):
    """A plaintext of the wrong size or out of its type's range."""

    reason = "INVALID_PLAINTEXT"


def _kind(code: int) -> Kind:
    if code == 0:
        return "bool"
    if code == 1:
        return "address"
    if code == 2:
        return "bytes"
    if code == 3:
        return "string"
    if code <= 35:
        return "uint"
    if code <= 67:
        return "int"
    return "fixed_bytes"


@dataclass(frozen=True, slots=True)
class ValueType:
    """A Solidity value type by its one-byte code (DESIGN §5)."""

    code: int

    def __post_init__(self) -> None:
        if type(self.code) is not int or not 0 <= self.code <= MAX_TYPE_CODE:
            raise UnknownValueType(f"unknown type code {self.code!r} (0..{MAX_TYPE_CODE})")

    @classmethod
    def from_code(cls, code: int) -> ValueType:
        """The type of `code`; raises UnknownValueType for codes outside 0..99."""
        return cls(code)

    @property
    def kind(self) -> Kind:
        return _kind(self.code)

    @property
    def is_dynamic(self) -> bool:
        """True for `bytes` and `string`, whose plaintexts have no fixed size."""
        return self.code in (2, 3)

    @property
    def is_integer(self) -> bool:
        """True for uintN and intN (the types arithmetic is defined on)."""
        return 4 <= self.code <= 67

    @property
    def is_signed(self) -> bool:
        return 36 <= self.code <= 67

    @property
    def byte_size(self) -> int:
        """The plaintext size in bytes; raises InvalidArgument for the dynamic types."""
        code = self.code
        if code == 0:
            return 1
        if code == 1:
            return 20
        if code <= 3:
            raise InvalidArgument(f"{self.name} has no fixed size")
        if code <= 35:
            return code - 3
        if code <= 67:
            return code - 35
        return code - 67

    @property
    def bits(self) -> int:
        """The width in bits: N for uintN/intN/bytesN×8, 1 for bool, 160 for address."""
        return 1 if self.code == 0 else 8 * self.byte_size

    @property
    def min_value(self) -> int:
        """The smallest integer value (bool 0, intN −2^(N−1), all others 0)."""
        if self.is_signed:
            return -(1 << (self.bits - 1))
        if self.is_dynamic:
            raise InvalidArgument(f"{self.name} has no integer range")
        return 0

    @property
    def max_value(self) -> int:
        """The largest integer value (bool 1, uintN 2^N−1, intN 2^(N−1)−1, bytesN 2^(8N)−1)."""
        if self.is_signed:
            return (1 << (self.bits - 1)) - 1
        return (1 << self.bits) - 1

    @property
    def name(self) -> str:
        """The Solidity name: bool, address, bytes, string, uint8 … int256, bytes1 … bytes32."""
        kind = self.kind
        if kind in ("bool", "address", "bytes", "string"):
            return kind
        if kind == "fixed_bytes":
            return f"bytes{self.byte_size}"
        return f"{kind}{self.bits}"

    def __str__(self) -> str:
        return self.name


BOOL = ValueType(0)
ADDRESS = ValueType(1)
BYTES = ValueType(2)
STRING = ValueType(3)


def uint(bits: int) -> ValueType:
    """uintN for N in 8, 16, …, 256."""
    if bits % 8 or not 8 <= bits <= 256:
        raise UnknownValueType(f"uint{bits} is not a Solidity type")
    return ValueType(3 + bits // 8)


def int_(bits: int) -> ValueType:
    """intN for N in 8, 16, …, 256."""
    if bits % 8 or not 8 <= bits <= 256:
        raise UnknownValueType(f"int{bits} is not a Solidity type")
    return ValueType(35 + bits // 8)


def fixed_bytes(n: int) -> ValueType:
    """bytesN for N in 1..32."""
    if not 1 <= n <= 32:
        raise UnknownValueType(f"bytes{n} is not a Solidity type")
    return ValueType(67 + n)


def encode_plaintext(vt: ValueType, value: int | bool | bytes | str) -> bytes:
    """The plaintext bytes of `value` as type `vt` (exact size, big-endian, checked range).

    bool takes a bool (or 0/1); address takes 20 bytes or an int below 2^160; uintN/intN take
    an int (not a bool) in range; bytesN takes exactly N bytes; bytes takes bytes; string
    takes a str or UTF-8 bytes.
    """
    kind = vt.kind
    if kind == "bool":
        if value is True or value is False or (type(value) is int and value in (0, 1)):
            return b"\x01" if value else b"\x00"
        raise InvalidPlaintext("bool value must be True/False or 0/1")
    if kind in ("uint", "int") or (kind == "address" and isinstance(value, int)):
        if type(value) is not int:
            raise InvalidPlaintext(f"{vt.name} value must be an int")
        if not vt.min_value <= value <= vt.max_value:
            raise InvalidPlaintext(f"value out of range for {vt.name}")
        return value.to_bytes(vt.byte_size, "big", signed=vt.is_signed)
    if kind == "string" and isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidPlaintext(f"{vt.name} value must be bytes")
    data = _sized(vt, bytes(value))
    if kind == "string":
        _check_utf8(data)
    return data


def _check_utf8(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPlaintext("string plaintext is not valid UTF-8") from None


def _sized(vt: ValueType, data: bytes) -> bytes:
    if vt.is_dynamic:
        if len(data) > MAX_DYNAMIC_SIZE:
            raise InvalidPlaintext(f"{vt.name} plaintext exceeds {MAX_DYNAMIC_SIZE} bytes")
    elif len(data) != vt.byte_size:
        raise InvalidPlaintext(f"{vt.name} plaintext must be {vt.byte_size} bytes")
    return data


def decode_plaintext(vt: ValueType, data: bytes) -> Plaintext:
    """The value of a plaintext of type `vt`; strict: wrong size or a bool byte ≥ 2 raises.

    Returns bool for bool, int for uintN/intN, bytes for address, bytesN, bytes and string
    (the checked UTF-8 bytes; `.decode()` gives the str).
    """
    data = _sized(vt, bytes(data))
    kind = vt.kind
    if kind == "bool":
        if data[0] > 1:
            raise InvalidPlaintext("bool plaintext must be 0x00 or 0x01")
        return data[0] == 1
    if kind in ("uint", "int"):
        return int.from_bytes(data, "big", signed=vt.is_signed)
    if kind == "string":
        _check_utf8(data)
    return data


@dataclass(frozen=True, slots=True)
class Handle:
    """A 32-byte handle: prehandle (26 bytes), chain id (uint32), type code, version (0)."""

    prehandle: bytes
    chain_id: int
    type_code: int
    version: int = HANDLE_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.prehandle, bytes) or len(self.prehandle) != PREHANDLE_SIZE:
            raise InvalidHandle(f"prehandle must be {PREHANDLE_SIZE} bytes")
        if type(self.chain_id) is not int or not 0 <= self.chain_id < 2**32:
            raise InvalidHandle("chain id must fit 32 bits")
        if type(self.type_code) is not int or not 0 <= self.type_code <= MAX_TYPE_CODE:
            raise InvalidHandle(f"unknown type code {self.type_code!r}")
        if self.version != HANDLE_VERSION:
            raise InvalidHandle(f"unsupported handle version {self.version!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Handle:
        """Parse 32 bytes strictly (length, type code ≤ 99, version 0)."""
        if len(data) != HANDLE_SIZE:
            raise InvalidHandle(f"a handle is {HANDLE_SIZE} bytes, got {len(data)}")
        data = bytes(data)
        return cls(
            prehandle=data[:26],
            chain_id=int.from_bytes(data[26:30], "big"),
            type_code=data[30],
            version=data[31],
        )

    @classmethod
    def from_hex(cls, text: str) -> Handle:
        """Parse `0x` + 64 hex digits (the prefix is optional)."""
        try:
            raw = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            raise InvalidHandle("handle is not hex") from None
        return cls.from_bytes(raw)

    def to_bytes(self) -> bytes:
        return (
            self.prehandle
            + self.chain_id.to_bytes(4, "big")
            + bytes((self.type_code, self.version))
        )

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @property
    def value_type(self) -> ValueType:
        return ValueType(self.type_code)

    def hex(self) -> str:
        """`0x` + 64 lowercase hex digits."""
        return "0x" + self.to_bytes().hex()

    def __str__(self) -> str:
        return self.hex()


def new_input_handle(
    chain_id: int, vt: ValueType, rand: Callable[[int], bytes] = os.urandom
) -> Handle:
    """A fresh input handle: 26 random bytes, the chain id and the type."""
    return Handle(prehandle=rand(PREHANDLE_SIZE), chain_id=chain_id, type_code=vt.code)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def result_handle(
    operator: int,
    operands: Sequence[bytes],
    nox_compute: bytes,
    caller: bytes,
    block_timestamp: int,
    output_index: int,
    chain_id: int,
    vt: ValueType,
) -> Handle:
    """The handle NoxCompute derives for output `output_index` of an operation.

    prehandle = keccak256(abi.encode(uint8 operator, bytes32[] operands, address noxCompute,
    address caller, uint256 blockTimestamp, uint8 outputIndex))[0:26]. The ABI encoding has
    a fixed head (six words, the array's offset 0xc0), so it is written out directly; a test
    checks it against eth_abi.encode.
    """
    if not 0 <= operator <= 255:
        raise InvalidArgument("operator must fit uint8")
    if not 0 <= output_index <= 255:
        raise InvalidArgument("output index must fit uint8")
    if not 0 <= block_timestamp < 2**256:
        raise InvalidArgument("block timestamp must fit uint256")
    if len(nox_compute) != 20 or len(caller) != 20:
        raise InvalidArgument("NoxCompute and caller must be 20-byte addresses")
    if any(len(op) != HANDLE_SIZE for op in operands):
        raise InvalidArgument("every operand must be a 32-byte handle")
    zero12 = bytes(12)
    digest = keccak256(
        _word(operator),
        _word(0xC0),
        zero12,
        bytes(nox_compute),
        zero12,
        bytes(caller),
        _word(block_timestamp),
        _word(output_index),
        _word(len(operands)),
        *(bytes(op) for op in operands),
    )
    return Handle(prehandle=digest[:PREHANDLE_SIZE], chain_id=chain_id, type_code=vt.code)


def value_tag(key: TagKey, handle: bytes, plaintext: bytes) -> bytes:
    """HMAC-SHA256(tag key, handle ‖ plaintext) (`nox.crypto.tags`): equal tags mean equal
    values under the same handle; only a holder of the tag key (an attested enclave) can
    compute or test one."""
    if len(handle) != HANDLE_SIZE:
        raise InvalidHandle(f"a handle is {HANDLE_SIZE} bytes")
    return key.tag(handle, plaintext)
