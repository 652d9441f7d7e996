"""REPORTDATA binding of an enclave key and its registration data (DESIGN §3).

REPORTDATA = enclave address (20) ‖ keccak256(extData) (32) ‖ zero padding (12), where
extData = abi.encode(uint8 role, address operator, uint256 chainId, address registry,
string endpoint) — the flashtestations binding scheme, so tools that know it read ours.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from attestation.exceptions import ReportDataMismatch

EXT_DATA_TYPES = ("uint8", "address", "uint256", "address", "string")


class Role(IntEnum):
    """Node roles (uint8, same values on-chain)."""

    UNSPECIFIED = 0
    ORCHESTRATOR = 1
    RUNNER = 2
    GATEWAY = 3
    KMS = 4
    INGESTOR = 5


def _address(value: bytes, name: str) -> str:
    if len(value) != 20:
        raise ValueError(f"{name} must be a 20-byte address")
    return "0x" + value.hex()


def ext_data(role: int, operator: bytes, chain_id: int, registry: bytes, endpoint: str) -> bytes:
    """ABI encoding of (uint8 role, address operator, uint256 chainId, address registry,
    string endpoint)."""
    if not 0 <= role <= 255:
        raise ValueError("role must fit in uint8")
    if not 0 <= chain_id < 2**256:
        raise ValueError("chain id must fit in uint256")
    values = (
        role,
        _address(operator, "operator"),
        chain_id,
        _address(registry, "registry"),
        endpoint,
    )
    return bytes(abi_encode(list(EXT_DATA_TYPES), list(values)))


@dataclass(frozen=True, slots=True)
class ExtData:
    """Decoded extData."""

    role: int
    operator: bytes
    chain_id: int
    registry: bytes
    endpoint: str


def decode_ext_data(data: bytes) -> ExtData:
    """Inverse of `ext_data` (raises ValueError on malformed input)."""
    try:
        role, operator, chain_id, registry, endpoint = abi_decode(list(EXT_DATA_TYPES), data)
    except (DecodingError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"malformed extData: {exc}") from None
    return ExtData(
        role, bytes.fromhex(operator[2:]), chain_id, bytes.fromhex(registry[2:]), endpoint
    )


def report_data_for(enclave_address: bytes, ext_data: bytes) -> bytes:
    """The 64-byte REPORTDATA binding `enclave_address` and `ext_data`."""
    if len(enclave_address) != 20:
        raise ValueError("enclave address must be 20 bytes")
    return enclave_address + bytes(keccak(ext_data)) + bytes(12)


@dataclass(frozen=True, slots=True)
class Binding:
    """REPORTDATA split into its parts."""

    enclave_address: bytes
    ext_data_hash: bytes
    padding: bytes

    @property
    def well_formed(self) -> bool:
        return self.padding == bytes(12)


def split_report_data(report_data: bytes) -> Binding:
    if len(report_data) != 64:
        raise ReportDataMismatch("report_data", "must be 64 bytes")
    return Binding(report_data[:20], report_data[20:52], report_data[52:])


def check_binding(report_data: bytes, enclave_address: bytes, ext_data: bytes) -> None:
    """Raise `ReportDataMismatch` unless REPORTDATA binds exactly this address and extData."""
    b = split_report_data(report_data)
    if not hmac.compare_digest(b.enclave_address, enclave_address):
        raise ReportDataMismatch("report_data.enclave_address", "binds another enclave address")
    if not hmac.compare_digest(b.ext_data_hash, bytes(keccak(ext_data))):
        raise ReportDataMismatch("report_data.ext_data_hash", "binds other registration data")
    if not b.well_formed:
        raise ReportDataMismatch("report_data.padding", "bytes 52..63 must be zero")
