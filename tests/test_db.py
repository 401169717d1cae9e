"""The store: claims (of two processes racing for one row, exactly one wins) and migrations."""

from __future__ import annotations

from edrtrial.db import transaction
from edrtrial.models import OutboxMessage
from edrtrial.notify.states import OUTBOX
from edrtrial.states import OutboxState


def test_a_row_can_be_claimed_once(sessions):
    with transaction(sessions) as session:
        msg = OutboxMessage(
            dedupe_key="k", kind="desk-notice", recipient="d@example.jp", subject="s", body_text="b"
        )
        session.add(msg)
        session.flush()
        message_id = msg.id
    # Both read the message as pending; only the first to write moves it.
    with transaction(sessions) as first:
        assert OUTBOX.move_id(first, message_id, OutboxState.PENDING, "sent", sent_at=None)
    with transaction(sessions) as second:
        assert not OUTBOX.move_id(second, message_id, OutboxState.PENDING, "give_up")
    with sessions() as session:
        assert session.get_one(OutboxMessage, message_id).status == OutboxState.SENT


def test_migrations_build_exactly_the_models(engine):
    """A column added to a model without a migration would break every existing store."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from edrtrial.models import Base

    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_server_default": False}),
            Base.metadata,
        )
    assert diff == []


def test_upgrade_from_the_previous_schema_keeps_tickets_grouped(database_url):
    """A store created before desk workflow keeps its tickets, now with a correlation base."""
    from alembic import command
    from sqlalchemy import text

    from edrtrial.db import _alembic_config, make_engine, upgrade

    eng = make_engine(database_url)
    command.upgrade(_alembic_config(eng), "0002")
    with eng.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO company (key, name, contact_name, contact_email, language,"
                " planned_seats, seat_cap, created_at)"
                " VALUES ('k', 'K', '', 'a@b.jp', 'ja', 1, 300, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tenant (company_id, connector, external_id, state, state_reason,"
                " failures) VALUES (1, 'defender', 't', 'active', '', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ticket (tenant_id, correlation_key, title, priority, state, assignee,"
                " created_at, updated_at) VALUES (1, 'incident:9', 't', 'P1', 'new', '',"
                " '2026-01-01', '2026-01-01')"
            )
        )
    upgrade(eng)
    with eng.connect() as conn:
        row = conn.execute(text("SELECT correlation_base, escalation_level FROM ticket")).one()
    eng.dispose()
    assert tuple(row) == ("incident:9", 0)


WRITE_BACKS = {
    "a1": "",
    "a2": "pending",
    "a3": "done",
    "a4": "off",
    "a5": "failed: 403 Forbidden: the app lacks SecurityAlert.ReadWrite.All",
    "a6": "failed: ",
}


def test_write_back_state_and_error_are_split_and_joined_again_on_downgrade(database_url):
    """0004 moves each "failed: <reason>" into the error column; its downgrade puts it back."""
    from alembic import command
    from sqlalchemy import text

    from edrtrial.db import _alembic_config, make_engine

    eng = make_engine(database_url)
    cfg = _alembic_config(eng)
    command.upgrade(cfg, "0003")
    with eng.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO company (key, name, contact_name, contact_email, language,"
                " planned_seats, seat_cap, created_at)"
                " VALUES ('k', 'K', '', 'a@b.jp', 'ja', 1, 300, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tenant (company_id, connector, external_id, state, state_reason,"
                " failures) VALUES (1, 'defender', 't', 'active', '', 0)"
            )
        )
        for source_id, write_back in WRITE_BACKS.items():
            conn.execute(
                text(
                    "INSERT INTO alert (tenant_id, source, source_id, title, description,"
                    " severity, status, category, detection_source, service_source,"
                    " mitre_techniques, device_source_ids, device_names, raw, ingested_at,"
                    " matched_rules, write_back) VALUES (1, 'defender', :id, '', '', 'low',"
                    " 'new', '', '', '', '[]', '[]', '[]', '{}', '2026-01-01', '[]', :wb)"
                ),
                {"id": source_id, "wb": write_back},
            )

    def rows(columns: str) -> dict[str, tuple[str, ...]]:
        with eng.connect() as conn:
            found = conn.execute(text(f"SELECT source_id, {columns} FROM alert"))
            return {r[0]: tuple(r[1:]) for r in found}

    command.upgrade(cfg, "0004")
    assert rows("write_back, write_back_error") == {
        "a1": ("", ""),
        "a2": ("pending", ""),
        "a3": ("done", ""),
        "a4": ("off", ""),
        "a5": ("failed", "403 Forbidden: the app lacks SecurityAlert.ReadWrite.All"),
        "a6": ("failed", ""),
    }
    command.downgrade(cfg, "0003")
    assert rows("write_back") == {k: (v,) for k, v in WRITE_BACKS.items()}
    eng.dispose()


def test_stamps_are_filled_from_the_stored_datetimes_and_dropped_again_on_downgrade(
    database_url,
):
    """0005 keeps 100-ns stamps beside the datetimes; a store's existing rows get theirs, so
    an update 100 ns after a row stored before the upgrade is still newer."""
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from alembic import command

    from edrtrial.db import _alembic_config, make_engine
    from edrtrial.timeutil import Stamp

    stored = datetime(2026, 1, 1, 9, 30, 15, 123456, tzinfo=UTC)
    eng = make_engine(database_url)
    cfg = _alembic_config(eng)
    command.upgrade(cfg, "0004")
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO company (key, name, contact_name, contact_email, language,"
                " planned_seats, seat_cap, created_at)"
                " VALUES ('k', 'K', '', 'a@b.jp', 'ja', 1, 300, '2026-01-01')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO tenant (company_id, connector, external_id, state, state_reason,"
                " failures) VALUES (1, 'defender', 't', 'active', '', 0)"
            )
        )
        inserts = [
            "INSERT INTO alert (tenant_id, source, source_id, title, description, severity,"
            " status, category, detection_source, service_source, mitre_techniques,"
            " device_source_ids, device_names, raw, ingested_at, matched_rules, last_update_at)"
            " VALUES (1, 'defender', 'a1', '', '', 'low', 'new', '', '', '', '[]', '[]', '[]',"
            " '{}', '2026-01-01', '[]', :when)",
            "INSERT INTO incident (tenant_id, source, source_id, title, severity, status, raw,"
            " last_update_at) VALUES (1, 'defender', 'i1', '', 'low', 'active', '{}', :when)",
            "INSERT INTO device (tenant_id, source_id, name, os_platform, os_version,"
            " health_status, onboarding_status, risk_score, in_inventory, raw, updated_at,"
            " last_seen) VALUES (1, 'd1', 'PC', '', '', '', '', '', true, '{}', :when, :when)",
            "INSERT INTO poll_cursor (tenant_id, stream, updated_at, position)"
            " VALUES (1, 'alerts', :when, :when)",
        ]
        when = sa.bindparam("when", stored, type_=sa.DateTime(timezone=True))
        for insert in inserts:
            conn.execute(sa.text(insert).bindparams(when))
    command.upgrade(cfg, "0005")
    with eng.connect() as conn:
        found = {
            name: conn.execute(sa.text(f"SELECT {column}_stamp FROM {name}")).scalar_one()
            for name, column in (
                ("alert", "last_update"),
                ("incident", "last_update"),
                ("device", "last_seen"),
                ("poll_cursor", "position"),
            )
        }
    assert found == dict.fromkeys(found, Stamp.of(stored).ticks)

    command.downgrade(cfg, "0004")
    columns = {c["name"] for c in sa.inspect(eng).get_columns("alert")}
    eng.dispose()
    assert "last_update_stamp" not in columns
