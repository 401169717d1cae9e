"""when a tenant's first complete poll committed: tenant.first_poll_done_at

A tenant's first poll reads everything since its trial start; until it has completed, its
backlog is summarised to the company and the desk instead of announced ticket by ticket.
A tenant already polled (it has an alerts cursor, or a successful poll on record) is past
its first poll: the upgrade fills the column for it, so nothing changes for it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
    op.add_column("tenant", sa.Column("first_poll_done_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE tenant SET first_poll_done_at = COALESCE(last_success_at,"
        " (SELECT MIN(c.updated_at) FROM poll_cursor c"
        "  WHERE c.tenant_id = tenant.id AND c.stream = 'alerts'))"
        " WHERE last_success_at IS NOT NULL OR EXISTS ("
        "  SELECT 1 FROM poll_cursor c WHERE c.tenant_id = tenant.id AND c.stream = 'alerts')"
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild of tenant, which every tenant's rows
    # refer to, is refused by SQLite's foreign keys once the store holds data.
    op.drop_column("tenant", "first_poll_done_at")
