"""Migration 0007: the store keeps each Defender tenant id in lower case, and refuses to merge
two companies whose ids differ only in case."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, text

from edrtrial.db import _alembic_config, make_engine
from edrtrial.errors import StoreError

GUID = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"


def _at_0004_with(database_url: str, tenants: list[tuple[str, str, str]]) -> Engine:
    """A store at 0004 holding one company per (company key, connector, tenant id)."""
    eng = make_engine(database_url)
    command.upgrade(_alembic_config(eng), "0004")
    with eng.begin() as conn:
        for number, (key, connector, external_id) in enumerate(tenants, start=1):
            conn.execute(
                text(
                    "INSERT INTO company (id, key, name, contact_name, contact_email, language,"
                    " planned_seats, seat_cap, created_at)"
                    " VALUES (:n, :key, 'K', '', 'a@b.jp', 'ja', 1, 300, '2026-01-01')"
                ),
                {"n": number, "key": key},
            )
            conn.execute(
                text(
                    "INSERT INTO tenant (company_id, connector, external_id, state, state_reason,"
                    " failures) VALUES (:n, :connector, :id, 'active', '', 0)"
                ),
                {"n": number, "connector": connector, "id": external_id},
            )
    return eng


def _ids(eng: Engine) -> dict[str, str]:
    with eng.connect() as conn:
        found = conn.execute(
            text("SELECT c.key, t.external_id FROM tenant t JOIN company c ON c.id = t.company_id")
        )
        return dict(found.all())


def test_defender_tenant_ids_are_stored_lower_case(database_url):
    eng = _at_0004_with(
        database_url,
        [
            ("sakura", "defender", GUID.upper()),
            ("midori", "defender", "Midori.Example.JP"),
            ("air", "cycraft", "Org-42"),  # another EDR's ids keep their case
        ],
    )
    command.upgrade(_alembic_config(eng), "0007")
    assert _ids(eng) == {"sakura": GUID, "midori": "midori.example.jp", "air": "Org-42"}


def test_two_companies_holding_one_tenant_in_two_spellings_stop_the_upgrade(database_url):
    eng = _at_0004_with(
        database_url, [("sakura", "defender", GUID), ("midori", "defender", GUID.upper())]
    )
    with pytest.raises(StoreError) as caught:
        command.upgrade(_alembic_config(eng), "0007")
    assert str(caught.value).startswith(
        f"tenant {GUID} is stored for 2 companies, 'midori' (as {GUID.upper()}), 'sakura' (as "
        f"{GUID}): one tenant belongs to one company"
    )
    assert _ids(eng) == {"sakura": GUID, "midori": GUID.upper()}  # nothing changed
