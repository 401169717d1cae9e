"""one spelling per Defender tenant: tenant.external_id in lower case

A Defender tenant id is a GUID (or, until first resolved, a domain), and both compare without
regard to case; the config now gives them in lower case, so the store keeps them so too.
Two companies whose ids differ only in case hold one tenant: the upgrade refuses, naming
both, rather than merge their data. The downgrade leaves the ids lower case (the original
spelling is not kept, and it meant the same tenant).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-05 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from edrtrial.errors import StoreError

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT LOWER(t.external_id), c.key, t.external_id FROM tenant t"
                " JOIN company c ON c.id = t.company_id"
                " WHERE t.connector = 'defender' AND LOWER(t.external_id) IN ("
                "  SELECT LOWER(external_id) FROM tenant WHERE connector = 'defender'"
                "  GROUP BY LOWER(external_id) HAVING COUNT(*) > 1)"
                " ORDER BY LOWER(t.external_id), c.key"
            )
        )
        .all()
    )
    if clashes:
        tenant = clashes[0][0]
        holders = [
            f"{key!r} (as {spelled})" for lowered, key, spelled in clashes if lowered == tenant
        ]
        raise StoreError(
            f"tenant {tenant} is stored for {len(holders)} companies, {', '.join(holders)}: "
            "one tenant belongs to one company; keep it under one company (the others' alerts "
            "and devices are that tenant's too) before upgrading"
        )
    op.execute("UPDATE tenant SET external_id = LOWER(external_id) WHERE connector = 'defender'")


def downgrade() -> None:
    """Nothing to undo: a lower-case id names the same tenant."""
