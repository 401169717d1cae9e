"""the programme in the store: cohorts, applications, pre-diagnoses, each company's journey

Companies leave the config file: each gets its journey state, its identity (法人番号 or
name, address and representative), its cohort and its place in the queue; applications
keep the raw input as received; `tenant` gains its own connection settings (secret
references only), consent, verification and the drop of its credentials; the trial its
decision's author. Companies already in the store were brought from a config file with a
trial: the upgrade puts each where its trial stands today (in trial, ending within 14 days,
continuing, or being offboarded) so nothing they do changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 01:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def _add_reference(table: str, column: str, target: str) -> None:
    """A nullable foreign key column, without rebuilding `table` on SQLite."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with an inline REFERENCES but cannot ALTER in a constraint.
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES {target} (id)")
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}_{column}_{target}"), table, target, [column], ["id"]
        )


def upgrade() -> None:
    op.create_table(
        "cohort",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("course", sa.String(length=32), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("trial_months", sa.Integer(), nullable=True),
        sa.Column("closed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohort")),
        sa.UniqueConstraint("key", name=op.f("uq_cohort_key")),
    )
    text_columns = {
        "state": (sa.String(24), "applied"),
        "state_reason": (sa.Text(), ""),
        "kind": (sa.String(16), "corporation"),
        "identity_key": (sa.String(400), ""),
        "representative": (sa.String(200), ""),
        "address": (sa.Text(), ""),
        "prefecture": (sa.String(8), ""),
        "industry": (sa.String(64), ""),
        "contact_phone": (sa.String(40), ""),
        "course": (sa.String(32), "edr"),
    }
    for name, (kind, default) in text_columns.items():
        op.add_column("company", sa.Column(name, kind, nullable=False, server_default=default))
    for name in ("state_since", "queued_at", "place_since", "withdrawn_at", "purged_at"):
        op.add_column("company", sa.Column(name, WHEN, nullable=True))
    op.add_column("company", sa.Column("corporate_number", sa.String(13), nullable=True))
    op.add_column("company", sa.Column("capital_yen", sa.BigInteger(), nullable=True))
    op.add_column("company", sa.Column("employees", sa.Integer(), nullable=True))
    op.add_column("company", sa.Column("anon_code", sa.String(16), nullable=True))
    _add_reference("company", "cohort_id", "cohort")
    op.create_index("ix_company_corporate_number", "company", ["corporate_number"], unique=True)
    op.create_index("ix_company_anon_code", "company", ["anon_code"], unique=True)
    op.create_index(op.f("ix_company_identity_key"), "company", ["identity_key"])
    op.create_index(op.f("ix_company_cohort_id"), "company", ["cohort_id"])

    op.create_table(
        "application",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("raw", JSON, nullable=False),
        sa.Column("repeat_of", sa.Integer(), nullable=True),
        sa.Column("course", sa.String(length=32), nullable=False),
        sa.Column("planned_seats", sa.Integer(), nullable=False),
        sa.Column("existing_edr", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("existing_edr_name", sa.String(200), server_default="", nullable=False),
        sa.Column("prior_support", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("tokyo_subsidy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("attestations", JSON, nullable=False),
        sa.Column("eligibility", sa.String(16), server_default="", nullable=False),
        sa.Column("eligibility_reasons", JSON, nullable=False),
        sa.Column("decided_at", WHEN, nullable=True),
        sa.Column("call_due_on", sa.Date(), nullable=True),
        sa.Column("call_done_at", WHEN, nullable=True),
        sa.Column("call_by", sa.String(200), server_default="", nullable=False),
        sa.Column("call_notes", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_application_company_id_company")
        ),
        sa.ForeignKeyConstraint(
            ["repeat_of"], ["application.id"], name=op.f("fk_application_repeat_of_application")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_application")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_application_fingerprint")),
    )
    op.create_index(op.f("ix_application_company_id"), "application", ["company_id"])
    op.create_table(
        "pre_diagnosis",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("done_at", WHEN, nullable=False),
        sa.Column("done_by", sa.String(200), nullable=False),
        sa.Column("network_notes", sa.Text(), nullable=False),
        sa.Column("free_hub_ports", sa.Integer(), nullable=True),
        sa.Column("existing_utm", sa.Boolean(), nullable=False),
        sa.Column("existing_edr", sa.Boolean(), nullable=False),
        sa.Column("existing_edr_name", sa.String(200), nullable=False),
        sa.Column("existing_antivirus", sa.String(200), nullable=False),
        sa.Column("edr_users", sa.Integer(), nullable=False),
        sa.Column("utm_devices", sa.Integer(), nullable=False),
        sa.Column("security_policy", sa.String(16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["company.id"], name=op.f("fk_pre_diagnosis_company_id_company")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pre_diagnosis")),
        sa.UniqueConstraint("company_id", name=op.f("uq_pre_diagnosis_company_id")),
    )
    op.create_table(
        "predecessor_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("corporate_number", sa.String(13), nullable=True),
        sa.Column("identity_key", sa.String(400), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("programme", sa.String(200), nullable=False),
        sa.Column("year", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predecessor_record")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_predecessor_record_fingerprint")),
    )
    op.create_index(
        op.f("ix_predecessor_record_corporate_number"), "predecessor_record", ["corporate_number"]
    )
    op.create_index(
        op.f("ix_predecessor_record_identity_key"), "predecessor_record", ["identity_key"]
    )
    op.create_table(
        "company_aggregate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("anon_code", sa.String(16), nullable=False),
        sa.Column("cohort_id", sa.Integer(), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("industry_row", sa.String(32), nullable=False),
        sa.Column("detections", JSON, nullable=False),
        sa.Column("incidents", sa.Integer(), nullable=False),
        sa.Column("ack_minutes", JSON, nullable=False),
        sa.Column("resolve_minutes", JSON, nullable=False),
        sa.Column("devices_onboarded", sa.Integer(), nullable=False),
        sa.Column("devices_active", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("pre_diagnosis", JSON, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohort.id"], name=op.f("fk_company_aggregate_cohort_id_cohort")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_company_aggregate")),
        sa.UniqueConstraint(
            "anon_code", "month", name=op.f("uq_company_aggregate_anon_code_month")
        ),
    )
    op.create_index(op.f("ix_company_aggregate_anon_code"), "company_aggregate", ["anon_code"])
    op.create_index(op.f("ix_company_aggregate_cohort_id"), "company_aggregate", ["cohort_id"])

    op.add_column("tenant", sa.Column("connection", JSON, nullable=False, server_default="{}"))
    for name in ("consented_at", "verified_at", "credentials_dropped_at"):
        op.add_column("tenant", sa.Column(name, WHEN, nullable=True))
    op.add_column("trial", sa.Column("decided_at", WHEN, nullable=True))
    op.add_column(
        "trial", sa.Column("decided_by", sa.String(200), nullable=False, server_default="")
    )
    _place_existing_companies()


def _place_existing_companies() -> None:
    """Companies brought from a config file: where their trial stands today (JST)."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo("Asia/Tokyo")).date()
    rows = bind.execute(
        sa.text(
            "SELECT c.id, t.ends_on, t.decision, n.id FROM company c"
            " LEFT JOIN trial t ON t.company_id = c.id"
            " LEFT JOIN tenant n ON n.company_id = c.id"
        )
    ).all()
    for company_id, ends_on, decision, tenant_id in rows:
        if ends_on is None:
            state = "consented" if tenant_id is not None else "admitted"
        else:
            ends = ends_on if not isinstance(ends_on, str) else datetime.fromisoformat(ends_on)
            ends = ends.date() if isinstance(ends, datetime) else ends
            if ends < today:
                state = "continuing" if decision == "continue" else "offboarding"
            elif ends - timedelta(days=14) <= today:
                state = "ending"
            else:
                state = "in_trial"
        bind.execute(
            sa.text("UPDATE company SET state = :state, state_since = :now WHERE id = :id"),
            {
                "state": state,
                "now": now if bind.dialect.name != "sqlite" else now.replace(tzinfo=None),
                "id": company_id,
            },
        )
        if tenant_id is not None:
            bind.execute(
                sa.text(
                    "UPDATE tenant SET consented_at = COALESCE(consented_at, :now) WHERE id = :id"
                ),
                {
                    "now": now if bind.dialect.name != "sqlite" else now.replace(tzinfo=None),
                    "id": tenant_id,
                },
            )


def downgrade() -> None:
    for name in ("decided_by", "decided_at"):
        op.drop_column("trial", name)
    for name in ("credentials_dropped_at", "verified_at", "consented_at", "connection"):
        op.drop_column("tenant", name)
    op.drop_table("company_aggregate")
    op.drop_table("predecessor_record")
    op.drop_table("pre_diagnosis")
    op.drop_table("application")
    op.drop_index(op.f("ix_company_cohort_id"), table_name="company")
    op.drop_index(op.f("ix_company_identity_key"), table_name="company")
    op.drop_index("ix_company_anon_code", table_name="company")
    op.drop_index("ix_company_corporate_number", table_name="company")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("fk_company_cohort_id_cohort"), "company", type_="foreignkey")
    op.drop_column("company", "cohort_id")
    for name in (
        "anon_code",
        "employees",
        "capital_yen",
        "corporate_number",
        "purged_at",
        "withdrawn_at",
        "place_since",
        "queued_at",
        "state_since",
        "course",
        "contact_phone",
        "industry",
        "prefecture",
        "address",
        "representative",
        "identity_key",
        "kind",
        "state_reason",
        "state",
    ):
        op.drop_column("company", name)
    op.drop_table("cohort")
