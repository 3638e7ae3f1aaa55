"""Initial schema: units, applications, keys, nonces, sessions, packets, deliveries, events, presence.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nonces",
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_key", "nonce", name=op.f("pk_nonces")),
    )
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nonces_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "units",
        sa.Column("id", sa.String(length=35), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("name_folded", sa.String(length=255), nullable=False),
        sa.Column("parent_id", sa.String(length=35), nullable=True),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("legacy", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_offset_seconds", sa.Float(), nullable=True),
        sa.Column("stream_cursor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["units.id"], name=op.f("fk_units_parent_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
    )
    op.create_table(
        "applications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_applications_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
        sa.UniqueConstraint("unit_id", "name", name=op.f("uq_applications_unit_id_name")),
    )
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_applications_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "packets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("data_type", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("content_state", sa.String(length=16), nullable=False),
        sa.Column("blob_key", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["source_unit"], ["units.id"], name=op.f("fk_packets_source_unit_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packets")),
    )
    with op.batch_alter_table("packets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_packets_content_state_state"), ["content_state", "state"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_packets_source_unit_created_at"), ["source_unit", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_packets_state_upload_expires_at"), ["state", "upload_expires_at"], unique=False
        )

    op.create_table(
        "presence_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_presence_log_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presence_log")),
    )
    with op.batch_alter_table("presence_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_presence_log_unit_id_at"), ["unit_id", "at"], unique=False)

    op.create_table(
        "access_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("application_id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("algorithm", sa.String(length=32), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("public_key_pem", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["application_id"], ["applications.id"], name=op.f("fk_access_keys_application_id_applications")
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_access_keys_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_keys")),
    )
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_keys_application_id"), ["application_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("packet_id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("packet_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["packet_id"], ["packets.id"], name=op.f("fk_deliveries_packet_id_packets")),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_deliveries_unit_id_units")),
        sa.PrimaryKeyConstraint("packet_id", "unit_id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_unit_id_state_priority_packet_created_at"),
            ["unit_id", "state", "priority", "packet_created_at"],
            unique=False,
        )

    op.create_table(
        "packet_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("packet_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("unit", sa.String(length=35), nullable=True),
        sa.Column("audience", sa.String(length=35), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["packet_id"], ["packets.id"], name=op.f("fk_packet_events_packet_id_packets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packet_events")),
    )
    with op.batch_alter_table("packet_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_packet_events_audience_id"), ["audience", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_packet_events_packet_id"), ["packet_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["access_key"], ["access_keys.id"], name=op.f("fk_sessions_access_key_access_keys")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_access_key"), ["access_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_sessions_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_sessions_access_key"))

    op.drop_table("sessions")
    with op.batch_alter_table("packet_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_packet_events_packet_id"))
        batch_op.drop_index(batch_op.f("ix_packet_events_audience_id"))

    op.drop_table("packet_events")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_unit_id_state_priority_packet_created_at"))

    op.drop_table("deliveries")
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_keys_application_id"))

    op.drop_table("access_keys")
    with op.batch_alter_table("presence_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_presence_log_unit_id_at"))

    op.drop_table("presence_log")
    with op.batch_alter_table("packets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_packets_state_upload_expires_at"))
        batch_op.drop_index(batch_op.f("ix_packets_source_unit_created_at"))
        batch_op.drop_index(batch_op.f("ix_packets_content_state_state"))

    op.drop_table("packets")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applications_unit_id"))

    op.drop_table("applications")
    op.drop_table("units")
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nonces_expires_at"))

    op.drop_table("nonces")
