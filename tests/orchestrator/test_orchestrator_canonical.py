"""`Web3CanonicalChain`: block hashes remembered for `cache_seconds`, then read again (so a
reorganization is seen at most that late); "no such block" is never remembered."""

from __future__ import annotations

from typing import Any

import pytest
from web3.exceptions import BlockNotFound

from nox.errors import InvalidArgument
from nox.orchestrator.directory import Web3CanonicalChain


class _Eth:
    """Stands in for `w3.eth` (what is tested is the cache, not web3): a mutable chain."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}
        self.calls = 0

    def get_block(self, number: int) -> dict[str, Any]:
        self.calls += 1
        if number not in self.blocks:
            raise BlockNotFound(f"block {number}")
        return {"hash": self.blocks[number]}


class _Provider:
    """Stands in for the HTTP provider's JSON-RPC batches, over the same blocks as `_Eth`."""

    def __init__(self, eth: _Eth) -> None:
        self.eth = eth
        self.batches: list[list[int]] = []

    def make_batch_request(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        numbers = [int(params[0], 16) for method, params in calls]
        assert {method for method, _ in calls} == {"eth_getBlockByNumber"}
        self.batches.append(numbers)
        return [
            {
                "result": {
                    "hash": "0x" + self.eth.blocks[n].hex(),
                    "timestamp": hex(1_700_000_000 + n),
                }
                if n in self.eth.blocks
                else None
            }
            for n in numbers
        ]


class _W3:
    def __init__(self) -> None:
        self.eth = _Eth()
        self.provider = _Provider(self.eth)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _chain(ttl: float) -> tuple[Web3CanonicalChain, _Eth, _Clock]:
    w3, clock = _W3(), _Clock()
    return Web3CanonicalChain(w3, cache_seconds=ttl, monotonic=clock), w3.eth, clock  # type: ignore[arg-type]


def test_a_reorganization_is_seen_once_the_cached_hash_is_older_than_the_ttl() -> None:
    chain, eth, clock = _chain(0.5)
    eth.blocks[7] = b"\x01" * 32
    assert chain.block_hash(7) == b"\x01" * 32
    eth.blocks[7] = b"\x02" * 32  # reorganized
    clock.now += 0.4
    assert chain.block_hash(7) == b"\x01" * 32  # within the TTL: the remembered hash
    assert eth.calls == 1
    clock.now += 0.1
    assert chain.block_hash(7) == b"\x02" * 32
    assert eth.calls == 2


def test_a_missing_block_is_never_cached() -> None:
    chain, eth, _ = _chain(10.0)
    assert chain.block_hash(9) is None
    eth.blocks[9] = b"\x03" * 32
    assert chain.block_hash(9) == b"\x03" * 32


def test_zero_ttl_reads_the_chain_every_time() -> None:
    chain, eth, _ = _chain(0.0)
    eth.blocks[1] = b"\x04" * 32
    for _ in range(3):
        assert chain.block_hash(1) == b"\x04" * 32
    assert eth.calls == 3


def test_negative_ttl_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        _chain(-1.0)


def test_prefetch_reads_many_blocks_in_one_batch_and_leaves_missing_ones_uncached() -> None:
    chain, eth, clock = _chain(0.5)
    provider: _Provider = chain._w3.provider  # type: ignore[assignment]
    eth.blocks.update({7: b"\x07" * 32, 8: b"\x08" * 32})
    chain.prefetch([8, 7, 9, 7])
    assert provider.batches == [[7, 8, 9]]
    assert chain.block_hash(7) == b"\x07" * 32
    assert chain.block_hash(8) == b"\x08" * 32
    assert eth.calls == 0  # both came from the batch
    assert chain.block_hash(9) is None  # not mined: asked again, individually
    assert eth.calls == 1
    chain.prefetch([7, 8])  # still fresh: nothing to read
    assert len(provider.batches) == 1
    eth.blocks[7] = b"\x17" * 32  # reorganized
    clock.now += 0.5
    chain.prefetch([7, 8])
    assert provider.batches[-1] == [7, 8]
    assert chain.block_hash(7) == b"\x17" * 32
    assert eth.calls == 1
