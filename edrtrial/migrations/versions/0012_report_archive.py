"""the report archive: every report sent kept as its file, with whom it went to and when

A company's weekly or monthly report, an incident report and the secretariat's seat report
are sent with their PDF or CSV attached; `report_archive` records each (company, period,
language, recipients, file and its digest), and an outbox mail names the archived report
it attaches.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_archive",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_report_archive_company_id_company")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_report_archive_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_report_archive_ticket_id_ticket")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_archive")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_report_archive_dedupe_key")),
    )
    for column in ("kind", "company_id", "tenant_id"):
        op.create_index(op.f(f"ix_report_archive_{column}"), "report_archive", [column])
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with an inline REFERENCES but cannot ALTER in a constraint.
        op.execute(
            "ALTER TABLE outbox_message ADD COLUMN report_id INTEGER REFERENCES report_archive (id)"
        )
    else:
        op.add_column("outbox_message", sa.Column("report_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_outbox_message_report_id_report_archive"),
            "outbox_message",
            "report_archive",
            ["report_id"],
            ["id"],
        )
    op.create_index(op.f("ix_outbox_message_report_id"), "outbox_message", ["report_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_message_report_id"), table_name="outbox_message")
    with op.batch_alter_table("outbox_message") as batch:
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint(
                op.f("fk_outbox_message_report_id_report_archive"), type_="foreignkey"
            )
        batch.drop_column("report_id")
    for column in ("kind", "company_id", "tenant_id"):
        op.drop_index(op.f(f"ix_report_archive_{column}"), table_name="report_archive")
    op.drop_table("report_archive")
