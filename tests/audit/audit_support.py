"""Registrations the audit must judge: good nodes and nodes whose on-chain quote is bad."""

from __future__ import annotations

import struct
from collections.abc import Callable

from contracts_support import ENDPOINT, WORKLOAD_ID, Net
from eth_account.signers.local import LocalAccount

from attestation import parse_quote
from attestation.providers.simulated import SimulatedTdx
from nox.chain.contracts import to_bytes20


def broken_signature(quote: bytes) -> bytes:
    """The quote with one byte of its ECDSA quote signature flipped: header, body and
    REPORTDATA (all the contract checks) are untouched."""
    signed = parse_quote(quote).signed_length
    (size,) = struct.unpack_from("<I", quote, signed)
    assert size > 64
    pos = signed + 4 + 10  # inside the 64-byte signature that follows the length
    return quote[:pos] + bytes([quote[pos] ^ 0x01]) + quote[pos + 1 :]


def register_with_quote(
    net: Net, role: int, quote_of: Callable[[bytes, bytes], bytes]
) -> LocalAccount:
    """Register a fresh enclave in `role` whose quote is `quote_of(enclave, operator)`."""
    net.registry.allow_workload(role, WORKLOAD_ID, net.owner)
    enclave: LocalAccount = net.new_enclave()
    operator = net.backend.accounts[1]
    quote = quote_of(to_bytes20(enclave.address), to_bytes20(operator.address))
    net.registry.register(quote, role, operator.address, ENDPOINT, enclave)
    return enclave


def tampered_node(net: Net, role: int) -> LocalAccount:
    """Valid on-chain binding and workload, broken quote signature: the contract accepts it."""
    return register_with_quote(
        net, role, lambda e, o: broken_signature(net.bound_quote(e, role, o))
    )


def foreign_root_node(net: Net, role: int) -> LocalAccount:
    """A quote signed through another deployment's dev PKI (a root the auditor does not trust)."""
    other = SimulatedTdx.generate()

    def quote(enclave: bytes, operator: bytes) -> bytes:
        genuine = net.bound_quote(enclave, role, operator)
        return other.quote(parse_quote(genuine).report_data)

    return register_with_quote(net, role, quote)
