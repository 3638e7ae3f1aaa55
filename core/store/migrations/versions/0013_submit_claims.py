"""Idempotent submissions across nodes: one claim per (scope, key).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submit_claims",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.Column("packet_id", sa.String(length=36), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_submit_claims")),
    )
    with op.batch_alter_table("submit_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_submit_claims_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("submit_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submit_claims_expires_at"))
    op.drop_table("submit_claims")
