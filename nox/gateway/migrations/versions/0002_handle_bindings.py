"""Handle bindings: each row keeps its producer's signed commitment (issue 14).

`binding_salt` (32 bytes) is the salt of the row's tag commitment, `binding_signature`
(65 bytes) the producer's signature of the HandleBindings digest, `binding_proof` the
concatenated 32-byte Merkle siblings from the row's leaf to the signed root (empty for an
input), `binding_key_proof` a runner output's proof that it made K (NULL for an
input). Nullable: rows stored before this revision have no binding, and the gateway refuses
to serve them (STORED_RECORD_TAMPERED).

Revision ID: 0002_handle_bindings
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_handle_bindings"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_handles") as batch:
        batch.add_column(sa.Column("binding_salt", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("binding_signature", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("binding_proof", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("binding_key_proof", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_handles") as batch:
        batch.drop_column("binding_key_proof")
        batch.drop_column("binding_proof")
        batch.drop_column("binding_signature")
        batch.drop_column("binding_salt")
