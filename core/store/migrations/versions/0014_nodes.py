"""The cluster's nodes (heartbeats), the event streams each holds, and who claimed a delivery.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    op.create_table(
        "stream_holders",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("streams", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_stream_holders_unit_id_units")),
        sa.PrimaryKeyConstraint("node_id", "unit_id", name=op.f("pk_stream_holders")),
    )
    with op.batch_alter_table("stream_holders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stream_holders_unit_id"), ["unit_id"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
    with op.batch_alter_table("stream_holders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_holders_unit_id"))
    op.drop_table("stream_holders")
    op.drop_table("nodes")
