"""write-back status and error apart: alert.write_back_error

`alert.write_back` held "failed: <reason>"; it now holds only the state ("failed"), and the
reason moves to its own column. The downgrade puts them back together.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
    op.add_column(
        "alert", sa.Column("write_back_error", sa.Text(), nullable=False, server_default="")
    )
    # "failed: reason" -> ("failed", "reason"); SUBSTR and LTRIM mean the same on both stores.
    op.execute(
        "UPDATE alert SET write_back_error = LTRIM(SUBSTR(write_back, 8)), write_back = 'failed'"
        " WHERE write_back LIKE 'failed:%'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE alert SET write_back = 'failed: ' || write_back_error WHERE write_back = 'failed'"
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("write_back_error")
