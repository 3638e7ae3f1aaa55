"""Single-use event stream tickets (how a browser opens GET /v1/events without headers).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["access_key"], ["access_keys.id"], name=op.f("fk_stream_tickets_access_key_access_keys")
        ),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_stream_tickets")),
    )
    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_tickets_access_key"), ["access_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_stream_tickets_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_tickets_expires_at"))
        batch_op.drop_index(batch_op.f("ix_stream_tickets_access_key"))
    op.drop_table("stream_tickets")
