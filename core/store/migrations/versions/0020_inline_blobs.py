"""Small uploads kept in the store: table `inline_blobs`, the sealed bytes of an upload of at most
`blobs.inline_bytes`, written in the acceptance's transaction instead of a file (no file to create,
fsync, rename and unlink). Each row goes with its packet's data key (ON DELETE CASCADE), which the
purge deletes.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inline_blobs",
        sa.Column("key_id", sa.String(length=80), nullable=False),
        sa.Column("blob_key", sa.String(length=80), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["content_keys.key_id"], ondelete="CASCADE",
                                name=op.f("fk_inline_blobs_key_id_content_keys")),
        sa.PrimaryKeyConstraint("key_id", "blob_key", name=op.f("pk_inline_blobs")),
    )


def downgrade() -> None:
    op.drop_table("inline_blobs")
