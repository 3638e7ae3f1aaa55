"""Finish purges the earlier code left half-done.

Before the purge was recorded in the completing transaction, a packet went `purging` → `purged` in
two steps; a hub stopped between them left rows `purging` that nothing finishes now. They become
`purged` (at their completion time), and `reconcile_blobs` deletes any file left behind.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE packets SET content_state = 'purged', "
               "purged_at = COALESCE(completed_at, accepted_at, created_at) WHERE content_state = 'purging'")


def downgrade() -> None:
    pass  # `purged` is a valid state for the earlier code too
