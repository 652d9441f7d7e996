"""Alembic migrations of the gateway store (applied by `nox.gateway.store.upgrade`)."""
