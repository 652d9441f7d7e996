"""Initial schema: published tasks and stored handles.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_tasks",
        sa.Column("task_id", sa.LargeBinary(), nullable=False),
        sa.Column("result_digest", sa.LargeBinary(), nullable=False),
        sa.Column("handle_count", sa.Integer(), nullable=False),
        sa.Column("stored_at", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name="pk_gateway_tasks"),
        sa.CheckConstraint("length(task_id) BETWEEN 1 AND 64", name="ck_gateway_tasks_task_id_len"),
        sa.CheckConstraint("length(result_digest) = 32", name="ck_gateway_tasks_digest_len"),
    )
    op.create_table(
        "gateway_handles",
        sa.Column("handle", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("ephemeral_public_key", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("type_code", sa.SmallInteger(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("value_tag", sa.LargeBinary(), nullable=False),
        sa.Column("origin_task", sa.LargeBinary(), nullable=True),
        sa.Column("owner", sa.LargeBinary(), nullable=True),
        sa.Column("application", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("handle", name="pk_gateway_handles"),
        sa.ForeignKeyConstraint(
            ["origin_task"],
            ["gateway_tasks.task_id"],
            name="fk_gateway_handles_origin_task_gateway_tasks",
        ),
        sa.CheckConstraint("length(handle) = 32", name="ck_gateway_handles_handle_len"),
        sa.CheckConstraint("length(ephemeral_public_key) = 33", name="ck_gateway_handles_k_len"),
        sa.CheckConstraint("length(nonce) = 12", name="ck_gateway_handles_nonce_len"),
        sa.CheckConstraint("length(value_tag) = 32", name="ck_gateway_handles_tag_len"),
    )
    op.create_index("ix_gateway_handles_origin_task", "gateway_handles", ["origin_task"])


def downgrade() -> None:
    op.drop_index("ix_gateway_handles_origin_task", table_name="gateway_handles")
    op.drop_table("gateway_handles")
    op.drop_table("gateway_tasks")
