"""Every registration of a NoxRegistry, read from its `NodeRegistered` events.

The contract stores only the hash of a node's quote; the raw quote is in the event that
registered it. An auditor therefore reads all `NodeRegistered` events, keeps, for each
enclave, the event whose quote hashes to the on-chain `quoteHash` (a node may have
re-registered several times), and pairs it with the current on-chain record (status,
expiry, revocation) and the role's workload allowlist.
"""

from __future__ import annotations

from dataclasses import dataclass

from web3 import Web3

from nox.chain.contracts import NodeRecord, RegistryClient, to_bytes20
from nox.crypto.hashing import keccak256


@dataclass(frozen=True)
class Registration:
    """One enclave as the chain knows it: current record, the raw quote it registered with
    (None if no event carries a quote matching the on-chain hash), and its history."""

    record: NodeRecord
    quote: bytes | None
    #: Number of `NodeRegistered` events of this enclave (re-registrations included).
    registrations: int
    #: Block number of the event that carried `quote` (None when `quote` is None).
    block_number: int | None
    workload_allowed: bool


def read_registrations(
    client: RegistryClient, *, from_block: int = 0, to_block: int | None = None
) -> list[Registration]:
    """Every enclave that ever registered, in order of first registration."""
    w3 = client.backend.w3
    head = int(w3.eth.block_number) if to_block is None else to_block
    event = client.contract.events.NodeRegistered()
    logs = event.get_logs(from_block=from_block, to_block=head)
    quotes: dict[bytes, list[tuple[bytes, int]]] = {}
    for entry in logs:
        enclave = to_bytes20(entry.args["enclave"])
        quotes.setdefault(enclave, []).append(
            (bytes(entry.args["quote"]), int(entry["blockNumber"]))
        )
    out: list[Registration] = []
    for enclave, history in quotes.items():
        record = client.node(Web3.to_checksum_address(enclave))
        if record is None:  # registered in an event, absent on-chain: cannot happen
            continue
        match = next(
            ((q, b) for q, b in reversed(history) if keccak256(q) == record.quote_hash), None
        )
        out.append(
            Registration(
                record=record,
                quote=None if match is None else match[0],
                registrations=len(history),
                block_number=None if match is None else match[1],
                workload_allowed=client.workload_allowed(record.role, record.workload_id),
            )
        )
    return out
