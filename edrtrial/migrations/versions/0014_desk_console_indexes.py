"""the console's desk at programme scale: open tickets by state, a ticket's history by target

The queue reads the few thousand open tickets among 100,000 mostly closed ones, and a
ticket's page reads its history from the audit log by target (`ticket:42`); without these
indexes both scan their whole table on every page and every refresh.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ticket_state_priority", "ticket", ["state", "priority"])
    op.create_index("ix_audit_event_target", "audit_event", ["target"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_target", table_name="audit_event")
    op.drop_index("ix_ticket_state_priority", table_name="ticket")
