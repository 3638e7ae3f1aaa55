"""Console secrets shown once, kept sealed in the store so a restart or another node still shows them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "one_time_secrets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("page", sa.Unicode(length=300), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_secrets")),
    )
    with op.batch_alter_table("one_time_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_one_time_secrets_session_hash"), ["session_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_one_time_secrets_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("one_time_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_one_time_secrets_expires_at"))
        batch_op.drop_index(batch_op.f("ix_one_time_secrets_session_hash"))
    op.drop_table("one_time_secrets")
