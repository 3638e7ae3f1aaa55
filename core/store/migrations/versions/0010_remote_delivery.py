"""Other exchanges: the id a forwarded delivery has there; units' mail from their directories.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail", sa.String(length=255), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_id", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_protocol_state"), ["protocol", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_protocol_state"))
        batch_op.drop_column("remote_id")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_column("mail")
