"""Alembic environment: runs on the connection the hub hands over (see database.Database.upgrade)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from lgsp.core.store.tables import metadata

_LOCK_ID = 0x15_C0_DE  # any constant; one migration at a time across PostgreSQL nodes

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `lgsp db upgrade`, which provides the connection")

if connection.dialect.name == "postgresql":
    connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
