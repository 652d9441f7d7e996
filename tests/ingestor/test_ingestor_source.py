"""`Web3ChainSource` on a JSON-RPC node: batched block reads agree with single reads, and a
log that is not a well-formed Operation event is refused (EventMalformed), not guessed at."""

from __future__ import annotations

import pytest

from nox.chain.anvil import AnvilProcess
from nox.ingestor.exceptions import EventMalformed
from nox.ingestor.source import Web3ChainSource

pytestmark = pytest.mark.integration


def test_blocks_in_one_batch_equal_blocks_read_one_by_one() -> None:
    with AnvilProcess() as anvil:
        w3 = anvil.backend().w3
        for _ in range(4):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        source = Web3ChainSource(w3, b"\x11" * 20)
        numbers = [0, 2, 3, 4, 999]
        batch = source.blocks(numbers)
        assert batch == {n: source.block(n) for n in numbers}
        assert batch[999] is None  # not mined: absent, as `block` says
        assert batch[4] is not None
        assert batch[4].number == 4
        assert len(batch[4].hash) == 32


def test_a_log_that_is_not_an_operation_event_is_refused() -> None:
    source = Web3ChainSource.__new__(Web3ChainSource)
    source._topic = b"\x01" * 32  # type: ignore[assignment]
    good = {
        "topics": [b"\x01" * 32, bytes(12) + b"\xca" * 20, (7).to_bytes(32, "big")],
        # abi.encode(bytes32[] [h1], bytes32[] [])
        "data": (64).to_bytes(32, "big") + (128).to_bytes(32, "big") + (1).to_bytes(32, "big")
        + b"\xab" * 32 + (0).to_bytes(32, "big"),
        "blockNumber": 5, "blockHash": b"\x05" * 32, "transactionHash": b"\x06" * 32,
        "logIndex": 2,
    }  # fmt: skip
    log = source._decode(good)
    assert (log.caller, log.operator, log.inputs, log.outputs) == (
        b"\xca" * 20, 7, (b"\xab" * 32,), ()
    )  # fmt: skip
    for broken in (
        {**good, "topics": good["topics"][:2]},  # an anonymous or other event
        {**good, "topics": [b"\x02" * 32, *good["topics"][1:]]},  # another event's topic
        {**good, "data": good["data"][:-1]},  # truncated ABI data
        {k: v for k, v in good.items() if k != "logIndex"},
    ):
        with pytest.raises(EventMalformed):
            source._decode(broken)
