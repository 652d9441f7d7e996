"""Applying the gateway's alembic migrations programmatically.

No alembic.ini and no path relative to the working directory: the script location is the
package resource `nox.gateway:migrations`, and the migrations run on the caller's engine,
in one transaction (PostgreSQL and SQLite both have transactional DDL), so a failed upgrade
leaves the previous schema intact. On PostgreSQL a transaction-scoped advisory lock makes
concurrent starts of several gateway instances take turns: the first migrates, the others
then find the schema at head and do nothing.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from nox.gateway.store._engine import write_transaction

SCRIPT_LOCATION = "nox.gateway:migrations"
VERSION_TABLE = "gateway_alembic_version"

# pg_advisory_xact_lock key reserved for the gateway's migrations (an arbitrary fixed
# 64-bit value; other components must pick different ones).
_MIGRATION_LOCK_KEY = 0x3D5B8F0A6C2E4917


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config for the gateway migrations (give `url` to use the alembic CLI API)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser interpolation: a literal % (URL escapes) must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind `engine` to `revision` (idempotent)."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
