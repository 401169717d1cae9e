"""desk workflow: ticket states and escalation, notes, evidence, device tags, channels

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON elsewhere (as in edrtrial.models).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: on SQLite a batch rebuilds the table, which foreign
    # keys from existing rows forbid (and which a large alert table would not need anyway).
    op.add_column(
        "company",
        sa.Column("auto_isolation", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("device", sa.Column("tags", JSON, nullable=False, server_default="[]"))
    op.add_column("alert", sa.Column("evidence", JSON, nullable=False, server_default="{}"))
    for name in ("classification", "determination"):
        op.add_column("alert", sa.Column(name, sa.String(64), nullable=False, server_default=""))
    op.add_column("alert", sa.Column("write_back", sa.Text(), nullable=False, server_default=""))
    for column in (
        sa.Column("correlation_base", sa.String(200), nullable=False, server_default=""),
        sa.Column("last_alert_at", TS, nullable=True),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("channel", sa.String(64), nullable=False, server_default=""),
        sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ack_due_at", TS, nullable=True),
        sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("summary", JSON, nullable=False, server_default="{}"),
        sa.Column("classification", sa.String(64), nullable=False, server_default=""),
        sa.Column("determination", sa.String(64), nullable=False, server_default=""),
    ):
        op.add_column("ticket", column)
    op.create_index(op.f("ix_ticket_correlation_base"), "ticket", ["correlation_base"])
    op.create_index(op.f("ix_ticket_ack_due_at"), "ticket", ["ack_due_at"])
    op.execute("UPDATE ticket SET correlation_base = correlation_key")
    op.execute("UPDATE ticket SET last_alert_at = updated_at")
    op.create_table(
        "ticket_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_ticket_note_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_note")),
    )
    op.create_index(op.f("ix_ticket_note_ticket_id"), "ticket_note", ["ticket_id"])
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with an inline REFERENCES but cannot ALTER in a constraint.
        op.execute(
            "ALTER TABLE response_action ADD COLUMN ticket_id INTEGER REFERENCES ticket (id)"
        )
    else:
        op.add_column("response_action", sa.Column("ticket_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_response_action_ticket_id_ticket"),
            "response_action",
            "ticket",
            ["ticket_id"],
            ["id"],
        )
    op.create_index(op.f("ix_response_action_ticket_id"), "response_action", ["ticket_id"])
    op.add_column(
        "outbox_message",
        sa.Column("channel", sa.String(16), nullable=False, server_default="mail"),
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_column("channel")
    with op.batch_alter_table("response_action", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_response_action_ticket_id_ticket"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_response_action_ticket_id"))
        batch_op.drop_column("ticket_id")
    with op.batch_alter_table("ticket_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_note_ticket_id"))
    op.drop_table("ticket_note")
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_ack_due_at"))
        batch_op.drop_index(batch_op.f("ix_ticket_correlation_base"))
        for column in (
            "determination",
            "classification",
            "summary",
            "reopened",
            "ack_due_at",
            "escalation_level",
            "channel",
            "closed_at",
            "resolved_at",
            "acknowledged_at",
            "last_alert_at",
            "correlation_base",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("alert", schema=None) as batch_op:
        for column in ("write_back", "determination", "classification", "evidence"):
            batch_op.drop_column(column)
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_column("tags")
    with op.batch_alter_table("company", schema=None) as batch_op:
        batch_op.drop_column("auto_isolation")
