"""Input expiry: inputs that no task referenced are deleted after a while.

One nullable column, `gateway_handles.expires_at` (Unix seconds), set when an input is
stored and cleared when a task first references it; NULL (task outputs, referenced inputs,
and every row stored before this revision) is never deleted. Indexed for the sweep.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002_handle_bindings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("gateway_handles", sa.Column("expires_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_gateway_handles_expires_at", "gateway_handles", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_handles_expires_at", table_name="gateway_handles")
    with op.batch_alter_table("gateway_handles") as batch:
        batch.drop_column("expires_at")
