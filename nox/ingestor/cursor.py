"""The ingestor's cursor: the next block to read and the hashes of recent blocks.

Two small tables (SQLite or PostgreSQL, SQLAlchemy Core), keyed by (chain id, NoxCompute):

- `nox_ingestor_cursor(chain_id, compute_address, next_block, updated_at)`;
- `nox_ingestor_blocks(chain_id, compute_address, number, hash)`: the blocks the ingestor
  published from (and the last block of each batch), within the reorg window, so a reorg
  is detected (a stored hash no longer canonical) and its fork point found.

`save` writes both in one transaction: after a crash the cursor and the block hashes agree,
and the cursor never passes a message that JetStream has not stored (the caller saves only
after the publisher drained).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from nox.ingestor.source import BlockRef

__all__ = ["Cursor", "CursorStore"]


@dataclass(frozen=True)
class Cursor:
    """Where reading resumes, and the recent block hashes known to be published from."""

    next_block: int
    recent: dict[int, bytes]


class CursorStore:
    """See the module docstring. Calls block (they are small and rare)."""

    def __init__(
        self,
        engine: Engine,
        *,
        chain_id: int,
        compute_address: bytes,
        create_tables: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._chain = chain_id
        self._compute = bytes(compute_address)
        self._clock = clock
        self.metadata = sa.MetaData()
        self.cursor = sa.Table(
            "nox_ingestor_cursor",
            self.metadata,
            sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("compute_address", sa.LargeBinary(20), primary_key=True),
            sa.Column("next_block", sa.BigInteger, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
        )
        self.blocks = sa.Table(
            "nox_ingestor_blocks",
            self.metadata,
            sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("compute_address", sa.LargeBinary(20), primary_key=True),
            sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("hash", sa.LargeBinary(32), nullable=False),
        )
        if create_tables:
            self.metadata.create_all(engine)

    def _mine(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.and_(table.c.chain_id == self._chain, table.c.compute_address == self._compute)

    def load(self) -> Cursor | None:
        """The stored cursor, or None when this chain and contract were never read."""
        with self._engine.connect() as db:
            row = db.execute(sa.select(self.cursor.c.next_block).where(self._mine(self.cursor)))
            found = row.first()
            if found is None:
                return None
            rows = db.execute(
                sa.select(self.blocks.c.number, self.blocks.c.hash).where(self._mine(self.blocks))
            )
            recent = {int(n): bytes(h) for n, h in rows}
        return Cursor(int(found[0]), recent)

    def save(
        self,
        next_block: int,
        blocks: Sequence[BlockRef] = (),
        *,
        forget_from: int | None = None,
        keep_after: int | None = None,
    ) -> None:
        """Atomically: set the cursor, drop block hashes >= `forget_from` (a rewind) and
        <= `keep_after` (out of the reorg window), record `blocks`."""
        mine_blocks = self._mine(self.blocks)
        with self._engine.begin() as db:
            db.execute(sa.delete(self.cursor).where(self._mine(self.cursor)))
            db.execute(
                sa.insert(self.cursor).values(
                    chain_id=self._chain,
                    compute_address=self._compute,
                    next_block=next_block,
                    updated_at=int(self._clock()),
                )
            )
            if forget_from is not None:
                db.execute(
                    sa.delete(self.blocks).where(mine_blocks, self.blocks.c.number >= forget_from)
                )
            if keep_after is not None:
                db.execute(
                    sa.delete(self.blocks).where(mine_blocks, self.blocks.c.number <= keep_after)
                )
            numbers = sorted({b.number for b in blocks})
            if numbers:
                db.execute(
                    sa.delete(self.blocks).where(mine_blocks, self.blocks.c.number.in_(numbers))
                )
                db.execute(
                    sa.insert(self.blocks),
                    [
                        {"chain_id": self._chain, "compute_address": self._compute,
                         "number": b.number, "hash": b.hash}
                        for b in {b.number: b for b in blocks}.values()
                    ],
                )  # fmt: skip
