"""job runs, desk alarms, and since when a tenant is in its state

`job_run` keeps each scheduled job's last success and last failure (per company for a
company's job); `desk_alarm` the problems the desk was told about and not yet told of the
recovery; `tenant.state_since` when a tenant became failing or parked. Tenants already in a
state keep NULL there: their last poll stands in for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
    op.add_column("tenant", sa.Column("state_since", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("company_key", sa.String(length=64), server_default="", nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_seconds", sa.Float(), nullable=True),
        sa.Column("last_success_summary", sa.Text(), server_default="", nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_error", sa.Text(), server_default="", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
        sa.UniqueConstraint("job", "company_key", name=op.f("uq_job_run_job_company_key")),
    )
    op.create_table(
        "desk_alarm",
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("problem", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_desk_alarm_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_desk_alarm")),
    )


def downgrade() -> None:
    op.drop_table("desk_alarm")
    op.drop_table("job_run")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("state_since")
