"""Handle codec, value types, plaintext encoding (vs eth_abi) and result handles (vs eth_abi)."""

from __future__ import annotations

import hashlib
import hmac

import grpc
import pytest
from eth_abi import encode
from eth_hash.backends.pycryptodome import keccak256 as reference_keccak
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nox.crypto.tags import TagKey
from nox.errors import InvalidArgument
from nox.handles import (
    ADDRESS,
    BOOL,
    BYTES,
    MAX_DYNAMIC_SIZE,
    STRING,
    Handle,
    InvalidHandle,
    InvalidPlaintext,
    UnknownValueType,
    ValueType,
    decode_plaintext,
    encode_plaintext,
    fixed_bytes,
    int_,
    new_input_handle,
    result_handle,
    uint,
    value_tag,
)

prehandles = st.binary(min_size=26, max_size=26)
chain_ids = st.integers(min_value=0, max_value=2**32 - 1)
codes = st.integers(min_value=0, max_value=99)
handles32 = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20)


# ---------------------------------------------------------------- value types


def test_type_code_table() -> None:
    assert [ValueType(c).name for c in range(6)] == [
        "bool",
        "address",
        "bytes",
        "string",
        "uint8",
        "uint16",
    ]
    for n in range(8, 257, 8):
        assert uint(n).code == 3 + n // 8
        assert int_(n).code == 35 + n // 8
        assert uint(n).name == f"uint{n}"
        assert int_(n).name == f"int{n}"
        assert uint(n).bits == int_(n).bits == n
        assert uint(n).byte_size == int_(n).byte_size == n // 8
    for n in range(1, 33):
        assert fixed_bytes(n).code == 67 + n
        assert fixed_bytes(n).name == f"bytes{n}"
    assert (uint(8).code, uint(256).code, int_(8).code, int_(256).code) == (4, 35, 36, 67)
    assert (fixed_bytes(1).code, fixed_bytes(32).code) == (68, 99)
    kinds = [ValueType(c).kind for c in range(100)]
    assert kinds[:4] == ["bool", "address", "bytes", "string"]
    assert set(kinds[4:36]) == {"uint"}
    assert set(kinds[36:68]) == {"int"}
    assert set(kinds[68:]) == {"fixed_bytes"}


def test_ranges() -> None:
    assert (BOOL.min_value, BOOL.max_value, BOOL.byte_size) == (0, 1, 1)
    assert (uint(8).min_value, uint(8).max_value) == (0, 255)
    assert (int_(8).min_value, int_(8).max_value) == (-128, 127)
    assert (uint(256).max_value, int_(256).min_value) == (2**256 - 1, -(2**255))
    assert ADDRESS.byte_size == 20
    assert ADDRESS.max_value == 2**160 - 1
    assert int_(16).is_signed
    assert not uint(16).is_signed
    assert BYTES.is_dynamic
    assert STRING.is_dynamic
    for dynamic in (BYTES, STRING):
        with pytest.raises(InvalidArgument):
            dynamic.byte_size  # noqa: B018
        with pytest.raises(InvalidArgument):
            dynamic.min_value  # noqa: B018


@pytest.mark.parametrize("code", [-1, 100, 255, 256])
def test_unknown_type_codes(code: int) -> None:
    with pytest.raises(UnknownValueType) as err:
        ValueType.from_code(code)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "UNKNOWN_VALUE_TYPE"


@pytest.mark.parametrize("bits", [0, 7, 12, 264, -8])
def test_no_such_width(bits: int) -> None:
    with pytest.raises(UnknownValueType):
        uint(bits)
    with pytest.raises(UnknownValueType):
        int_(bits)


@pytest.mark.parametrize("n", [0, 33, -1, 64])
def test_no_such_fixed_bytes(n: int) -> None:
    with pytest.raises(UnknownValueType):
        fixed_bytes(n)


# ---------------------------------------------------------------- plaintexts


def abi_type(vt: ValueType) -> str:
    return vt.name


def abi_plaintext(vt: ValueType, value: object) -> bytes:
    """The type's plaintext from its ABI word: high bytes for bytesN, low bytes otherwise."""
    word = encode([abi_type(vt)], [value])
    if vt.kind == "fixed_bytes":
        return word[: vt.byte_size]
    return word[32 - vt.byte_size :]


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[ValueType, object]:
    vt = ValueType(draw(st.integers(min_value=0, max_value=99).filter(lambda c: c not in (2, 3))))
    if vt.kind == "bool":
        return vt, draw(st.booleans())
    if vt.kind in ("uint", "int"):
        return vt, draw(st.integers(min_value=vt.min_value, max_value=vt.max_value))
    return vt, draw(st.binary(min_size=vt.byte_size, max_size=vt.byte_size))


@settings(max_examples=300)
@given(tv=typed_values())
@example(tv=(int_(256), -(2**255)))
@example(tv=(int_(8), -1))
@example(tv=(uint(256), 2**256 - 1))
def test_plaintext_matches_eth_abi_and_round_trips(tv: tuple[ValueType, object]) -> None:
    vt, value = tv
    plaintext = encode_plaintext(vt, value)  # type: ignore[arg-type]
    assert len(plaintext) == vt.byte_size
    reference_value = "0x" + value.hex() if vt.kind == "address" else value  # type: ignore[union-attr]
    assert plaintext == abi_plaintext(vt, reference_value)
    assert decode_plaintext(vt, plaintext) == value


def test_address_from_int() -> None:
    assert encode_plaintext(ADDRESS, 1) == bytes(19) + b"\x01"
    with pytest.raises(InvalidPlaintext):
        encode_plaintext(ADDRESS, 2**160)


@pytest.mark.parametrize(
    ("vt", "value"),
    [
        (uint(8), 256),
        (uint(8), -1),
        (int_(8), 128),
        (int_(8), -129),
        (uint(256), 2**256),
        (uint(16), True),
        (uint(16), b"\x00\x01"),
        (uint(16), 1.0),
        (BOOL, 2),
        (BOOL, b"\x01"),
        (ADDRESS, bytes(19)),
        (ADDRESS, True),
        (fixed_bytes(4), bytes(3)),
        (fixed_bytes(4), 5),
        (STRING, b"\xff\xfe"),
        (BYTES, bytes(MAX_DYNAMIC_SIZE + 1)),
        (BYTES, 7),
    ],
)
def test_encode_rejects(vt: ValueType, value: object) -> None:
    with pytest.raises(InvalidPlaintext) as err:
        encode_plaintext(vt, value)  # type: ignore[arg-type]
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("code", [c for c in range(100) if c not in (2, 3)])
def test_decode_rejects_wrong_length(code: int) -> None:
    vt = ValueType(code)
    for size in (0, vt.byte_size - 1, vt.byte_size + 1):
        if size == vt.byte_size or size < 0:
            continue
        with pytest.raises(InvalidPlaintext):
            decode_plaintext(vt, bytes(size))


def test_bool_decoding_is_strict() -> None:
    assert decode_plaintext(BOOL, b"\x00") is False
    assert decode_plaintext(BOOL, b"\x01") is True
    for bad in (b"\x02", b"\xff"):
        with pytest.raises(InvalidPlaintext):
            decode_plaintext(BOOL, bad)


def test_dynamic_types() -> None:
    assert encode_plaintext(STRING, "nøx") == "nøx".encode()
    assert decode_plaintext(STRING, "nøx".encode()) == "nøx".encode()
    assert encode_plaintext(BYTES, b"") == b""
    assert decode_plaintext(BYTES, b"\x00\xff") == b"\x00\xff"
    with pytest.raises(InvalidPlaintext):
        decode_plaintext(STRING, b"\xc3")  # truncated UTF-8
    with pytest.raises(InvalidPlaintext):
        decode_plaintext(BYTES, bytes(MAX_DYNAMIC_SIZE + 1))


# ---------------------------------------------------------------- handles


@settings(max_examples=200)
@given(prehandle=prehandles, chain_id=chain_ids, code=codes)
@example(prehandle=bytes(26), chain_id=0, code=0)
@example(prehandle=b"\xff" * 26, chain_id=2**32 - 1, code=99)
def test_handle_round_trip(prehandle: bytes, chain_id: int, code: int) -> None:
    handle = Handle(prehandle=prehandle, chain_id=chain_id, type_code=code)
    raw = handle.to_bytes()
    assert raw == prehandle + chain_id.to_bytes(4, "big") + bytes((code, 0))
    assert Handle.from_bytes(raw) == handle
    assert Handle.from_hex(handle.hex()) == handle
    assert bytes(handle) == raw
    assert handle.value_type == ValueType(code)


@settings(max_examples=100)
@given(raw=handles32)
def test_from_bytes_accepts_exactly_the_valid_layout(raw: bytes) -> None:
    valid = raw[30] <= 99 and raw[31] == 0
    if valid:
        assert Handle.from_bytes(raw).to_bytes() == raw
    else:
        with pytest.raises(InvalidHandle):
            Handle.from_bytes(raw)


@pytest.mark.parametrize("size", [0, 1, 26, 31, 33, 64])
def test_rejects_wrong_length(size: int) -> None:
    with pytest.raises(InvalidHandle) as err:
        Handle.from_bytes(bytes(size))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == "INVALID_HANDLE"


@pytest.mark.parametrize("code", [100, 101, 200, 255])
def test_rejects_unknown_type_code(code: int) -> None:
    with pytest.raises(InvalidHandle, match="type code"):
        Handle.from_bytes(bytes(30) + bytes((code, 0)))
    with pytest.raises(InvalidHandle):
        Handle(prehandle=bytes(26), chain_id=1, type_code=code)


@pytest.mark.parametrize("version", [1, 2, 255])
def test_rejects_nonzero_version(version: int) -> None:
    with pytest.raises(InvalidHandle, match="version"):
        Handle.from_bytes(bytes(31) + bytes((version,)))
    with pytest.raises(InvalidHandle):
        Handle(prehandle=bytes(26), chain_id=1, type_code=0, version=version)


@pytest.mark.parametrize("chain_id", [-1, 2**32, 2**64, 421614 * 2**20])
def test_rejects_chain_id_over_32_bits(chain_id: int) -> None:
    with pytest.raises(InvalidHandle, match="32 bits"):
        Handle(prehandle=bytes(26), chain_id=chain_id, type_code=35)
    with pytest.raises(InvalidHandle):
        new_input_handle(chain_id, uint(256))


def test_rejects_bad_prehandle_and_hex() -> None:
    for pre in (bytes(25), bytes(27)):
        with pytest.raises(InvalidHandle):
            Handle(prehandle=pre, chain_id=1, type_code=0)
    with pytest.raises(InvalidHandle):
        Handle.from_hex("0xzz")


def test_new_input_handle() -> None:
    handle = new_input_handle(421614, uint(16), rand=lambda n: b"\x42" * n)
    assert handle.to_bytes().hex() == "42" * 26 + "00066eee" + "05" + "00"
    assert new_input_handle(1, BOOL) != new_input_handle(1, BOOL)


# ---------------------------------------------------------------- result handles, tags


@settings(max_examples=150)
@given(
    operator=st.integers(min_value=0, max_value=255),
    operands=st.lists(handles32, max_size=4),
    compute=addresses,
    caller=addresses,
    timestamp=st.integers(min_value=0, max_value=2**256 - 1),
    index=st.integers(min_value=0, max_value=255),
    chain_id=chain_ids,
    code=codes,
)
def test_result_handle_matches_eth_abi(
    operator: int,
    operands: list[bytes],
    compute: bytes,
    caller: bytes,
    timestamp: int,
    index: int,
    chain_id: int,
    code: int,
) -> None:
    preimage = encode(
        ["uint8", "bytes32[]", "address", "address", "uint256", "uint8"],
        [operator, operands, "0x" + compute.hex(), "0x" + caller.hex(), timestamp, index],
    )
    expected = reference_keccak(preimage)[:26] + chain_id.to_bytes(4, "big") + bytes((code, 0))
    handle = result_handle(
        operator, operands, compute, caller, timestamp, index, chain_id, ValueType(code)
    )
    assert handle.to_bytes() == expected


def test_result_handle_depends_on_every_input() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    base = dict(
        operator=1,
        operands=[a, b],
        nox_compute=b"\x0c" * 20,
        caller=b"\x0d" * 20,
        block_timestamp=100,
        output_index=0,
        chain_id=31337,
        vt=uint(256),
    )
    variants = [
        {"operator": 2},
        {"operands": [b, a]},
        {"operands": [a]},
        {"nox_compute": b"\x0e" * 20},
        {"caller": b"\x0e" * 20},
        {"block_timestamp": 101},
        {"output_index": 1},
    ]
    first = result_handle(**base).prehandle  # type: ignore[arg-type]
    for change in variants:
        assert result_handle(**{**base, **change}).prehandle != first  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"operator": 256},
        {"operator": -1},
        {"output_index": 256},
        {"block_timestamp": -1},
        {"block_timestamp": 2**256},
        {"nox_compute": bytes(19)},
        {"caller": bytes(21)},
        {"operands": [bytes(31)]},
    ],
)
def test_result_handle_rejects(change: dict[str, object]) -> None:
    base: dict[str, object] = dict(
        operator=1,
        operands=[bytes(32)],
        nox_compute=bytes(20),
        caller=bytes(20),
        block_timestamp=1,
        output_index=0,
        chain_id=1,
        vt=BOOL,
    )
    with pytest.raises(InvalidArgument):
        result_handle(**{**base, **change})  # type: ignore[arg-type]


@settings(max_examples=50)
@given(handle=handles32, plaintext=st.binary(max_size=64))
def test_value_tag(handle: bytes, plaintext: bytes) -> None:
    """HMAC-SHA256 under the tag key (docs/kms.md), checked against the stdlib directly."""
    key = bytes(range(32))
    tag = value_tag(TagKey(key), handle, plaintext)
    assert tag == hmac.new(key, handle + plaintext, hashlib.sha256).digest()
    assert tag != reference_keccak(handle + plaintext)  # not the key-less construction
    assert value_tag(TagKey(bytes(32)), handle, plaintext) != tag  # another key, another tag


def test_value_tag_rejects_bad_handle() -> None:
    with pytest.raises(InvalidHandle):
        value_tag(TagKey(bytes(32)), bytes(31), b"\x00")
