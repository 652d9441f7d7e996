"""Reading NoxCompute: block references and Operation logs, and one message per transaction.

`ChainSource` is what the ingestor needs from a chain; `Web3ChainSource` implements it over
any web3 (the embedded EVM or JSON-RPC). `build_messages` groups logs per transaction in log
order and turns each group into a `TransactionMessage` (task.proto).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from web3 import Web3
from web3.exceptions import BlockNotFound

from nox.chain.blocks import batch_block_headers
from nox.handles import ValueType
from nox.ingestor.exceptions import EventMalformed
from nox.v1 import task_pb2

__all__ = ["BlockRef", "ChainSource", "OperationLog", "Web3ChainSource", "build_messages"]

_PLAINTEXT_TO_ENCRYPTED = 0


@dataclass(frozen=True)
class BlockRef:
    """A block as the ingestor remembers it."""

    number: int
    hash: bytes
    timestamp: int


@dataclass(frozen=True)
class OperationLog:
    """One decoded NoxCompute `Operation(caller, operator, inputs, outputs)` log."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    caller: bytes
    operator: int
    inputs: tuple[bytes, ...]
    outputs: tuple[bytes, ...]


class ChainSource(Protocol):
    """Blocking reads of the chain (the ingestor runs them in a worker thread)."""

    def head(self) -> int:
        """The latest block number."""
        ...

    def block(self, number: int) -> BlockRef | None:
        """The canonical block `number`, or None when the chain is not that long."""
        ...

    def blocks(self, numbers: Sequence[int]) -> dict[int, BlockRef | None]:
        """`block` for several numbers at once (one round trip where the chain allows)."""
        ...

    def operation_logs(self, from_block: int, to_block: int) -> list[OperationLog]:
        """NoxCompute Operation logs of blocks from_block..to_block (inclusive)."""
        ...


class Web3ChainSource:
    """`ChainSource` over web3: `eth_getLogs` filtered on NoxCompute and the event topic.

    The logs are decoded here (the two indexed topics and the ABI data) rather than through
    web3's contract-event machinery, and the blocks of one
    scan are read in one JSON-RPC batch where the provider supports it: with one block per
    transaction, web3's per-call formatting was most of the ingestor's CPU.
    """

    def __init__(self, w3: Web3, compute_address: bytes) -> None:
        self._w3 = w3
        self._address = Web3.to_checksum_address(compute_address)
        # the event's signature, fixed by NoxCompute.sol
        self._topic = Web3.keccak(text="Operation(address,uint8,bytes32[],bytes32[])")

    def head(self) -> int:
        return int(self._w3.eth.block_number)

    def block(self, number: int) -> BlockRef | None:
        try:
            b = self._w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return BlockRef(number, bytes(b["hash"]), int(b["timestamp"]))

    def blocks(self, numbers: Sequence[int]) -> dict[int, BlockRef | None]:
        headers = None
        if len(numbers) > 1:
            try:
                headers = batch_block_headers(self._w3, numbers)
            except (ValueError, KeyError, TypeError) as err:
                raise EventMalformed(f"bad block batch: {type(err).__name__}") from err
        if headers is None:
            return {n: self.block(n) for n in numbers}
        return {n: None if h is None else BlockRef(n, *h) for n, h in headers.items()}

    def operation_logs(self, from_block: int, to_block: int) -> list[OperationLog]:
        logs = self._w3.eth.get_logs(
            {
                "address": self._address,
                "fromBlock": from_block,
                "toBlock": to_block,
                "topics": [self._topic.to_0x_hex()],
            }
        )
        return [self._decode(log) for log in logs]

    def _decode(self, log: Any) -> OperationLog:
        try:
            topics = [_hex_bytes(t) for t in log["topics"]]
            if len(topics) != 3 or topics[0] != bytes(self._topic):
                raise ValueError("not an Operation log")
            inputs, outputs = abi_decode(["bytes32[]", "bytes32[]"], _hex_bytes(log["data"]))
            return OperationLog(
                block_number=_int(log["blockNumber"]),
                block_hash=_hex_bytes(log["blockHash"]),
                tx_hash=_hex_bytes(log["transactionHash"]),
                log_index=_int(log["logIndex"]),
                caller=topics[1][12:],
                operator=int.from_bytes(topics[2], "big"),
                inputs=tuple(bytes(h) for h in inputs),
                outputs=tuple(bytes(h) for h in outputs),
            )
        except (ValueError, KeyError, TypeError, DecodingError) as err:
            raise EventMalformed(f"undecodable NoxCompute log: {type(err).__name__}") from err


def _hex_bytes(value: Any) -> bytes:
    """A JSON-RPC hex string (or bytes, from in-process providers) as bytes."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes.fromhex(str(value).removeprefix("0x"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else int(str(value), 16)


def plaintext_of(word: bytes, output_handle: bytes) -> bytes:
    """The big-endian plaintext of a PlaintextToEncrypted ABI word, in its type's size.

    The type is byte 30 of the result handle; the word is right-aligned for uint, int (sign
    extended), bool and address, left-aligned for bytesN (NoxCompute checked it is canonical).
    """
    if len(word) != 32 or len(output_handle) != 32:
        raise EventMalformed("PlaintextToEncrypted operand and handle must be 32 bytes")
    vt = ValueType.from_code(output_handle[30])
    if vt.is_dynamic:
        raise EventMalformed(f"PlaintextToEncrypted of a dynamic type {vt}")
    size = vt.byte_size
    return word[:size] if vt.kind == "fixed_bytes" else word[32 - size :]


def build_messages(
    logs: Sequence[OperationLog],
    blocks: dict[int, BlockRef],
    *,
    chain_id: int,
    compute_address: bytes,
) -> list[task_pb2.TransactionMessage]:
    """One TransactionMessage per transaction, transactions and operations in log order."""
    ordered = sorted(logs, key=lambda log: (log.block_number, log.log_index))
    messages: dict[tuple[int, bytes], task_pb2.TransactionMessage] = {}
    for log in ordered:
        block = blocks[log.block_number]
        if block.hash != log.block_hash:
            raise EventMalformed("log of a block that is no longer canonical (reorg)")
        key = (log.block_number, log.tx_hash)
        msg = messages.get(key)
        if msg is None:
            msg = task_pb2.TransactionMessage(
                chain_id=chain_id,
                block_number=log.block_number,
                block_hash=block.hash,
                block_timestamp=block.timestamp,
                transaction_hash=log.tx_hash,
                compute_address=compute_address,
            )
            messages[key] = msg
        op = task_pb2.Operation(
            log_index=log.log_index,
            operator=log.operator,
            caller=log.caller,
            output_handles=list(log.outputs),
        )
        if log.operator == _PLAINTEXT_TO_ENCRYPTED:
            if len(log.inputs) != 1 or len(log.outputs) != 1:
                raise EventMalformed("PlaintextToEncrypted has one operand and one output")
            op.plaintext = plaintext_of(log.inputs[0], log.outputs[0])
        else:
            op.input_handles.extend(log.inputs)
        msg.operations.append(op)
    return list(messages.values())
