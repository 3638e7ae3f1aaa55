"""edXML in the hub: content variants, unit formats, the document index, business statuses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.String(length=32), nullable=True))

    op.create_table(
        "packet_contents",
        sa.Column("packet_id", sa.String(length=36), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("blob_key", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("media_type", sa.String(length=128), nullable=False),
        sa.Column("data_type", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["packets.id"], name=op.f("fk_packet_contents_packet_id_packets")),
        sa.PrimaryKeyConstraint("packet_id", "variant", name=op.f("pk_packet_contents")),
    )
    op.create_table(
        "unit_formats",
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_unit_formats_unit_id_units")),
        sa.PrimaryKeyConstraint("unit_id", "family", name=op.f("pk_unit_formats")),
    )
    op.create_table(
        "documents",
        sa.Column("packet_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("document_id", sa.String(length=255), nullable=False),
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("code_number", sa.String(length=255), nullable=True),
        sa.Column("code_notation", sa.String(length=255), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("document_type", sa.String(length=32), nullable=True),
        sa.Column("type_name", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=True),
        sa.Column("due_date", sa.String(length=32), nullable=True),
        sa.Column("promulgation_date", sa.String(length=32), nullable=True),
        sa.Column("bussiness_doc_type", sa.SmallInteger(), nullable=True),
        sa.Column("status_code", sa.String(length=8), nullable=True),
        sa.Column("original_packet_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["original_packet_id"], ["packets.id"],
                                name=op.f("fk_documents_original_packet_id_packets")),
        sa.ForeignKeyConstraint(["packet_id"], ["packets.id"], name=op.f("fk_documents_packet_id_packets")),
        sa.PrimaryKeyConstraint("packet_id", name=op.f("pk_documents")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_documents_document_id_kind"), ["document_id", "kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_documents_original_packet_id"), ["original_packet_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_documents_source_unit_created_at"), ["source_unit", "created_at"],
                              unique=False)
    op.create_table(
        "document_statuses",
        sa.Column("document_id", sa.String(length=255), nullable=False),
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("packet_id", sa.String(length=36), nullable=True),
        sa.Column("status_code", sa.String(length=8), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status_time", sa.String(length=32), nullable=True),
        sa.Column("reported_by", sa.String(length=35), nullable=False),
        sa.Column("status_packet_id", sa.String(length=36), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["packets.id"], name=op.f("fk_document_statuses_packet_id_packets")),
        sa.ForeignKeyConstraint(["status_packet_id"], ["packets.id"],
                                name=op.f("fk_document_statuses_status_packet_id_packets")),
        sa.PrimaryKeyConstraint("document_id", "source_unit", "unit_id", name=op.f("pk_document_statuses")),
    )
    with op.batch_alter_table("document_statuses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_document_statuses_packet_id"), ["packet_id"], unique=False)


def downgrade() -> None:
    op.drop_table("document_statuses")
    op.drop_table("documents")
    op.drop_table("unit_formats")
    op.drop_table("packet_contents")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("variant")
