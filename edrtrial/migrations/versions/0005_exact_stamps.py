"""stamps to the 100 ns beside the datetimes: alert, incident, device, poll_cursor

A datetime keeps microseconds; Microsoft stamps changes to the 100 ns, so "newer" and the
poll cursor move to BIGINT columns of 100-ns ticks since 1970. Existing rows are filled
from their datetimes (their seventh digit was never kept: it is 0).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "alert": ("last_update_at", "last_update_stamp"),
    "incident": ("last_update_at", "last_update_stamp"),
    "device": ("last_seen", "last_seen_stamp"),
    "poll_cursor": ("position", "position_stamp"),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ticks(value: datetime) -> int:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    delta = aware - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 10


def upgrade() -> None:
    bind = op.get_bind()
    for table_name, (source, target) in COLUMNS.items():
        # Plain ADD COLUMN (as in 0003): no table rebuild on SQLite.
        op.add_column(table_name, sa.Column(target, sa.BigInteger(), nullable=True))
        # Filled in Python: neither store turns a timestamp into exact integer ticks alike.
        table = sa.table(
            table_name,
            sa.column("id", sa.Integer()),
            sa.column(source, sa.DateTime(timezone=True)),
            sa.column(target, sa.BigInteger()),
        )
        rows = bind.execute(
            sa.select(table.c.id, table.c[source]).where(table.c[source].is_not(None))
        ).all()
        if rows:
            bind.execute(
                table.update()
                .where(table.c.id == sa.bindparam("row_id"))
                .values({target: sa.bindparam("ticks")}),
                [{"row_id": row_id, "ticks": _ticks(value)} for row_id, value in rows],
            )


def downgrade() -> None:
    for table_name, (_, target) in COLUMNS.items():
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            batch_op.drop_column(target)
