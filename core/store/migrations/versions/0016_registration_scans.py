"""The signed scans of registration forms, linked to their request and stored as encrypted blobs.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registration_scans",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("form", sa.String(length=2), nullable=False),
        sa.Column("blob_key", sa.String(length=80), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["registration_requests.id"],
                                name=op.f("fk_registration_scans_request_id_registration_requests")),
        sa.PrimaryKeyConstraint("request_id", "form", name=op.f("pk_registration_scans")),
    )


def downgrade() -> None:
    op.drop_table("registration_scans")
