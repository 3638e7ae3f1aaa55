"""Reliable delivery: push mode, retries, offline reports, services, retry jobs.

Push mode and retry columns on deliveries; unit-level events (packet_id may be null); units'
offline_since; offline_reports; the service registry and its grants; APScheduler's job table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(length=8), nullable=False, server_default="pull"))
        batch_op.add_column(sa.Column("protocol", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_deliveries_state_next_attempt_at"), ["state", "next_attempt_at"],
                              unique=False)
    # Deliveries already queued keep their age limit counted from the packet's creation.
    op.execute("UPDATE deliveries SET queued_at = packet_created_at WHERE state <> 'waiting'")

    with op.batch_alter_table("packet_events", schema=None) as batch_op:
        batch_op.alter_column("packet_id", existing_type=sa.String(length=36), nullable=True)

    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "offline_reports",
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("source_unit", sa.String(length=35), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_offline_reports_unit_id_units")),
        sa.ForeignKeyConstraint(["source_unit"], ["units.id"], name=op.f("fk_offline_reports_source_unit_units")),
        sa.PrimaryKeyConstraint("unit_id", "source_unit", name=op.f("pk_offline_reports")),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("timeout_seconds", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_services_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_services_unit_id"), ["unit_id"], unique=False)
    op.create_table(
        "service_grants",
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=35), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], name=op.f("fk_service_grants_service_id_services")),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_service_grants_unit_id_units")),
        sa.PrimaryKeyConstraint("service_id", "unit_id", name=op.f("pk_service_grants")),
    )
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_jobs")),
    )
    with op.batch_alter_table("scheduler_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduler_jobs_next_run_time"), ["next_run_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scheduler_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduler_jobs_next_run_time"))
    op.drop_table("scheduler_jobs")
    op.drop_table("service_grants")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_unit_id"))
    op.drop_table("services")
    op.drop_table("offline_reports")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_column("offline_since")
    op.execute("DELETE FROM packet_events WHERE packet_id IS NULL")
    with op.batch_alter_table("packet_events", schema=None) as batch_op:
        batch_op.alter_column("packet_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_state_next_attempt_at"))
        batch_op.drop_column("last_error")
        batch_op.drop_column("last_attempt_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("protocol")
        batch_op.drop_column("mode")
