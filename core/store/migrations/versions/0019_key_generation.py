"""The access-key generation: a counter the store bumps whenever what authenticates a key changes.

Authentication caches access keys per process (core/keycache.py) and compares the entry's
generation with the one the request's nonce write reads back: any difference means a key, a unit's
status or its pinned certificates changed since, and the key is read again. Triggers bump the
counter in the transaction of the change itself, whatever made it (the directory, the console,
the CLI from another process, a registration's cancellation, a directory sync, a master key
rotation's re-sealing, an operator's SQL), so no code path can forget to.

SQLite: row triggers, `AFTER UPDATE OF <columns>` with a WHEN that skips rows whose values stayed
the same (presence writes `units` all the time, but never these columns). PostgreSQL: statement
triggers that run BEFORE the statement, so the counter's row is locked before any key or unit row
and two such transactions cannot deadlock on each other (each takes the counter first).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: The columns of each table that decide whether (and how) a key authenticates.
WATCHED = {
    "access_keys": ("id", "application_id", "unit_id", "algorithm", "secret_sealed", "public_key_pem",
                    "revoked_at"),
    "units": ("id", "status", "client_cert_sha256"),
}
BUMP = "UPDATE key_generation SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "key_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_generation")),
    )
    op.execute("INSERT INTO key_generation (id, generation) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION lgsp_bump_key_generation() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table, columns in WATCHED.items():
            op.execute(f"CREATE TRIGGER lgsp_key_generation_{table} BEFORE UPDATE OF {', '.join(columns)} "
                       f"OR DELETE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION lgsp_bump_key_generation()")
        return
    for table, columns in WATCHED.items():
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
        op.execute(f"CREATE TRIGGER lgsp_key_generation_{table}_update AFTER UPDATE OF {', '.join(columns)} "
                   f"ON {table} FOR EACH ROW WHEN {changed} BEGIN {BUMP}; END")
        op.execute(f"CREATE TRIGGER lgsp_key_generation_{table}_delete AFTER DELETE ON {table} "
                   f"FOR EACH ROW BEGIN {BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS lgsp_key_generation_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS lgsp_bump_key_generation()")
    else:
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS lgsp_key_generation_{table}_update")
            op.execute(f"DROP TRIGGER IF EXISTS lgsp_key_generation_{table}_delete")
    op.drop_table("key_generation")
