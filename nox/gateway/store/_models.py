"""Tables of the gateway store, declared with sqlmodel on a registry of their own.

The tables live on their own `registry` (hence their own `MetaData`), not on sqlmodel's
process-wide default, so other components' tables sharing the database (the replay cache,
for instance) never leak into this store's migrations or schema checks. Table names carry a
`gateway_` prefix for the same reason.

The migrations in `nox/gateway/migrations/versions/` create exactly this schema; a test
compares the migrated database with this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# Constraint names are fixed so later migrations can name what they alter (check
# constraints are named explicitly below).
_registry = registry(
    metadata=MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
        }
    )
)


class GatewayModel(SQLModel, registry=_registry):
    """Base of the gateway tables (own metadata, see the module docstring)."""


class TaskRow(GatewayModel, table=True):
    """One published task: which outputs it stored, their digest, and when."""

    __tablename__ = "gateway_tasks"
    __table_args__ = (
        CheckConstraint("length(task_id) BETWEEN 1 AND 64", name="ck_gateway_tasks_task_id_len"),
        CheckConstraint("length(result_digest) = 32", name="ck_gateway_tasks_digest_len"),
    )

    task_id: bytes = Field(sa_type=LargeBinary, primary_key=True)
    result_digest: bytes = Field(sa_type=LargeBinary)
    handle_count: int = Field(sa_type=Integer)
    stored_at: int = Field(sa_type=BigInteger)
    evidence: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)


class HandleRow(GatewayModel, table=True):
    """One stored handle: ECIES ciphertext, ephemeral key K, GCM nonce, value tag, origin."""

    __tablename__ = "gateway_handles"
    __table_args__ = (
        CheckConstraint("length(handle) = 32", name="ck_gateway_handles_handle_len"),
        CheckConstraint("length(ephemeral_public_key) = 33", name="ck_gateway_handles_k_len"),
        CheckConstraint("length(nonce) = 12", name="ck_gateway_handles_nonce_len"),
        CheckConstraint("length(value_tag) = 32", name="ck_gateway_handles_tag_len"),
    )

    handle: bytes = Field(sa_type=LargeBinary, primary_key=True)
    ciphertext: bytes = Field(sa_type=LargeBinary)
    ephemeral_public_key: bytes = Field(sa_type=LargeBinary)
    nonce: bytes = Field(sa_type=LargeBinary)
    type_code: int = Field(sa_type=SmallInteger)
    chain_id: int = Field(sa_type=BigInteger)
    value_tag: bytes = Field(sa_type=LargeBinary)
    origin_task: bytes | None = Field(
        default=None,
        sa_type=LargeBinary,
        foreign_key="gateway_tasks.task_id",
        index=True,
        nullable=True,
    )
    owner: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    application: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    created_at: int = Field(sa_type=BigInteger)
    expires_at: int | None = Field(default=None, sa_type=BigInteger, index=True, nullable=True)
    """When an input that no task has referenced yet is deleted (Unix seconds); NULL for a
    referenced input and for task outputs, which are kept (see nox/gateway/expiry.py)."""
    # The producer binding (revision 0002; nox.crypto.binding): salt of the tag commitment,
    # the producer's signature, the Merkle siblings of the row's leaf (concatenated), and a
    # runner output's proof that it made K.
    binding_salt: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    binding_signature: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    binding_proof: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    binding_key_proof: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)


def _table(model: type[GatewayModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


METADATA: MetaData = _registry.metadata
TASKS: Table = _table(TaskRow)
HANDLES: Table = _table(HandleRow)
