"""Statistics kept incrementally: per source unit and Vietnam day, the packets, bytes, deliveries,
failures by reason and delivery-time histogram, and how far the roll-up has folded the events.
The first roll-up on an existing hub folds all history (core/statistics.py).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_sent",
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("data_type", sa.String(length=64), nullable=False),
        sa.Column("packets", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("with_deadline", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("on_time", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source_unit", "day", "data_type", name=op.f("pk_stats_sent")),
    )
    op.create_table(
        "stats_traffic",
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("dest_unit", sa.String(length=35), nullable=False),
        sa.Column("data_type", sa.String(length=64), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source_unit", "day", "dest_unit", "data_type", name=op.f("pk_stats_traffic")),
    )
    op.create_index(op.f("ix_stats_traffic_dest_unit_day"), "stats_traffic", ["dest_unit", "day"])
    op.create_table(
        "stats_failures",
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.Unicode(length=128), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source_unit", "day", "reason", name=op.f("pk_stats_failures")),
    )
    op.create_table(
        "stats_delivery_times",
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source_unit", "day", "bucket", name=op.f("pk_stats_delivery_times")),
    )
    op.create_table(
        "stats_rollup",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("watermark", EventId, nullable=True),
        sa.Column("holes", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_stats_rollup")),
    )


def downgrade() -> None:
    op.drop_table("stats_rollup")
    op.drop_table("stats_delivery_times")
    op.drop_table("stats_failures")
    op.drop_index(op.f("ix_stats_traffic_dest_unit_day"), table_name="stats_traffic")
    op.drop_table("stats_traffic")
    op.drop_table("stats_sent")
