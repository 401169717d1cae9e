"""device actions: when each was sent and when the EDR finished it

`response_action.sent_at` is when the action was claimed for sending (the request left
then); reconciliation looks for the EDR's action from there. `finished_at` is when a
terminal status was recorded; offboarding is verified against it (the device must stop
reporting after it).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
    op.add_column(
        "response_action", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "response_action", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("response_action", schema=None) as batch_op:
        batch_op.drop_column("finished_at")
        batch_op.drop_column("sent_at")
