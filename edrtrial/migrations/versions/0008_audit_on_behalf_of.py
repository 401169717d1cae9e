"""who a person acted for: audit_event.on_behalf_of

The actor of an operator's step is now the operating-system login that ran it; the name
given with `--by` (until now written as the actor) is kept beside it. Earlier rows keep
their actor as it was written: which of them came from `--by` is not known.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
    op.add_column(
        "audit_event",
        sa.Column("on_behalf_of", sa.String(200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("on_behalf_of")
