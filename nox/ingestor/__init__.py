"""The ingestor (DESIGN §1, §8): NoxCompute logs -> signed TransactionMessages on JetStream.

- `service.Ingestor`: the polling loop (confirmations, batches, reorg rewind, buffering);
- `source`: `ChainSource` / `Web3ChainSource` and `build_messages` (grouping per transaction);
- `cursor.CursorStore`: the atomic cursor and recent block hashes (SQLite / PostgreSQL).
"""

from __future__ import annotations

from nox.ingestor.config import IngestorSettings
from nox.ingestor.cursor import Cursor, CursorStore
from nox.ingestor.service import Ingestor, IngestorMetrics
from nox.ingestor.source import (
    BlockRef,
    ChainSource,
    OperationLog,
    Web3ChainSource,
    build_messages,
    plaintext_of,
)

__all__ = [
    "BlockRef",
    "ChainSource",
    "Cursor",
    "CursorStore",
    "Ingestor",
    "IngestorMetrics",
    "IngestorSettings",
    "OperationLog",
    "Web3ChainSource",
    "build_messages",
    "plaintext_of",
]
