"""Clock-offset samples of units over time (the connection history's offsets).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clock_offsets",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offset_seconds", sa.Float(), nullable=False),
        sa.Column("min_seconds", sa.Float(), nullable=False),
        sa.Column("max_seconds", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clock_offsets")),
    )
    with op.batch_alter_table("clock_offsets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clock_offsets_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_clock_offsets_unit_id_at"), ["unit_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("clock_offsets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clock_offsets_unit_id_at"))
        batch_op.drop_index(batch_op.f("ix_clock_offsets_at"))
    op.drop_table("clock_offsets")
