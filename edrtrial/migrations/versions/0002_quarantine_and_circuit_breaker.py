"""quarantine and circuit breaker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:53:05.458726
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON elsewhere (as in edrtrial.models).
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", JSON, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_quarantined_record_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_record")),
        sa.UniqueConstraint(
            "tenant_id",
            "source",
            "kind",
            "source_id",
            name=op.f("uq_quarantined_record_tenant_id_source_kind_source_id"),
        ),
    )
    with op.batch_alter_table("quarantined_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantined_record_tenant_id"), ["tenant_id"], unique=False
        )

    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("not_before")
        batch_op.drop_column("failures")

    with op.batch_alter_table("quarantined_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_record_tenant_id"))

    op.drop_table("quarantined_record")
