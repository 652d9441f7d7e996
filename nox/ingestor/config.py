"""Typed, frozen settings of the ingestor (passed down; nothing global)."""

from __future__ import annotations

from dataclasses import dataclass

from nox.ingestor.exceptions import InvalidIngestorSettings


@dataclass(frozen=True)
class IngestorSettings:
    """Where to read, how far behind the head, and how the published envelopes look."""

    chain_id: int
    compute_address: bytes
    """20-byte NoxCompute address: the logs' source and the envelopes' audience."""
    registry_address: bytes
    """20-byte NoxRegistry address: verifyingContract of the envelope domain."""
    initial_block: int | None = None
    """Where to start when no cursor is stored (refuses to start without one or the other)."""
    confirmations: int = 6
    """Blocks a block must be buried under before its transactions are published (0 =
    optimistic, as the reference ingestor). A reorg deeper than this is still detected and
    its blocks re-read; see docs/orchestrator.md for what happens to orphaned tasks."""
    batch_blocks: int = 50
    poll_interval: float = 0.5
    retry_delay: float = 0.25
    reorg_window: int = 128
    """How many recent blocks' hashes are kept to find the fork point of a reorg."""
    message_ttl: int = 7 * 86_400
    """Validity of a TransactionMessage envelope: the stream's maximum message age."""
    max_buffered: int = 1000
    """Messages kept in memory while NATS is down before the scan pauses."""
    threaded_chain_calls: bool = True
    """Run blocking chain reads in a worker thread (False for an in-process EVM)."""

    def __post_init__(self) -> None:
        if not 0 < self.chain_id < 2**32:
            raise InvalidIngestorSettings("chain id must fit 32 bits")
        if len(self.compute_address) != 20 or len(self.registry_address) != 20:
            raise InvalidIngestorSettings("contract addresses must be 20 bytes")
        if self.confirmations < 0 or self.batch_blocks < 1 or self.reorg_window < 1:
            raise InvalidIngestorSettings("confirmations >= 0, batch and window >= 1")
        if self.initial_block is not None and self.initial_block < 0:
            raise InvalidIngestorSettings("initial_block must not be negative")
        if not (self.poll_interval > 0 and self.retry_delay > 0 and self.message_ttl > 0):
            raise InvalidIngestorSettings("intervals and ttl must be positive")
