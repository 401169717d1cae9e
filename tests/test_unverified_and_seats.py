"""What is still not verified after `programme.unverified_days` (tenants since consent,
devices since first seen), and a company in trial with more devices than its seats: the
desk told once, and once when it is back within them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.config import Config, load_config
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, Company, Device, OutboxMessage, Tenant
from edrtrial.service import alarms

from sandbox_config import settings, write_config


@pytest.fixture
def config(tmp_path: Path, database_url: str, engine) -> Config:
    data = settings(database_url, mail_dir=tmp_path / "mail")
    data["programme"]["unverified_days"] = 14
    return load_config(write_config(tmp_path / "config.toml", data, companies=0))


def company(
    sessions: sessionmaker[Session],
    key: str,
    state: str,
    *,
    consented: datetime,
    verified: datetime | None = None,
    planned: int = 0,
) -> int:
    with transaction(sessions) as session:
        row = Company(
            key=key, name=f"{key} 株式会社", contact_email=f"it@{key}.example.jp", state=state
        )
        row.planned_seats = planned
        session.add(row)
        session.flush()
        tenant = Tenant(
            company_id=row.id,
            connector="defender",
            external_id=f"{key}.example.jp",
            consented_at=consented,
            verified_at=verified,
        )
        session.add(tenant)
        session.flush()
        return tenant.id


def devices(
    sessions: sessionmaker[Session],
    tenant_id: int,
    count: int,
    first_seen: datetime,
    *,
    tested: bool = True,
    prefix: str = "pc",
) -> None:
    with transaction(sessions) as session:
        for number in range(count):
            session.add(
                Device(
                    tenant_id=tenant_id,
                    source_id=f"{prefix}-{tenant_id}-{number}",
                    name=f"{prefix}-{number}",
                    onboarding_status="Onboarded",
                    in_inventory=True,
                    first_seen=first_seen,
                    last_seen=first_seen,
                    detection_test_at=first_seen if tested else None,
                )
            )


def cli(config: Config, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config.path), *args])
    assert result.exit_code == 0, result.output
    return result


def test_unverified_lists_tenants_and_devices_past_the_days_allowed(config, sessions, now):
    days = timedelta(days=1)
    late = company(sessions, "late", "consented", consented=now - 15 * days)
    company(sessions, "fresh", "consented", consented=now - 13 * days)
    verified = company(
        sessions, "verified", "in_trial", consented=now - 40 * days, verified=now - 39 * days
    )
    company(sessions, "gone", "offboarded", consented=now - 90 * days)
    devices(sessions, verified, 1, now - 20 * days, tested=False, prefix="silent")
    devices(sessions, verified, 1, now - 3 * days, tested=False, prefix="new")
    devices(sessions, verified, 2, now - 20 * days)
    devices(sessions, late, 1, now - 15 * days, tested=False, prefix="late")

    output = cli(config, "tenants", "unverified", "--json").output

    rows = [(r["company"], r["what"], r["name"], r["days"]) for r in json.loads(output)]
    assert rows == [
        ("late", "tenant", "late.example.jp", 15),
        ("late", "device", "late-0", 15),
        ("verified", "device", "silent-0", 20),
    ]
    table = cli(config, "tenants", "unverified", "--wide").output
    assert "3 unverified after 14 days" in table and "同意済" in table


def desk_mails(sessions: sessionmaker[Session]) -> list[OutboxMessage]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "desk-alarm")
                .order_by(OutboxMessage.id)
            )
        )


def test_devices_past_the_planned_seats_are_told_to_the_desk_once_and_recovery_once(
    config, sessions, now
):
    tenant = company(sessions, "sakura", "in_trial", consented=now - timedelta(days=30), planned=3)
    devices(sessions, tenant, 3, now - timedelta(days=20))
    with transaction(sessions) as session:
        assert alarms.tell_desk(session, config.settings, now) == 0  # within its seats

    devices(sessions, tenant, 1, now - timedelta(days=1), prefix="extra")
    for minutes in (0, 1, 2):  # the desk's check runs again and again: told once
        with transaction(sessions) as session:
            alarms.tell_desk(session, config.settings, now + timedelta(minutes=minutes))
    [told] = desk_mails(sessions)
    assert "端末数超過" in told.subject and "sakura" in told.subject
    assert "4 devices onboarded, more than its 3 planned seats" in told.body_text
    assert "edrtrial seats" in told.body_text

    with transaction(sessions) as session:
        extra = session.scalars(select(Device).where(Device.source_id.like("extra-%"))).one()
        extra.in_inventory = False  # the company removed the unplanned PC
    for minutes in (3, 4):
        with transaction(sessions) as session:
            alarms.tell_desk(session, config.settings, now + timedelta(minutes=minutes))
    first, recovered = desk_mails(sessions)
    assert "[復旧]" in recovered.subject and "端末数解消" in recovered.subject
    with sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == "seats:sakura")
        ).all()
    assert actions == ["alarm.raised", "alarm.cleared"]


def test_devices_past_the_courses_cap_are_told_even_without_a_plan(config, sessions, now):
    tenant = company(sessions, "big", "ending", consented=now - timedelta(days=80))
    with transaction(sessions) as session:
        session.scalars(select(Company).where(Company.key == "big")).one().seat_cap = 2
    devices(sessions, tenant, 3, now - timedelta(days=20))
    with transaction(sessions) as session:
        alarms.tell_desk(session, config.settings, now)
    [told] = desk_mails(sessions)
    assert "3 devices onboarded, more than the cap of 2 users" in told.body_text


def test_a_company_not_in_its_trial_is_not_counted(config, sessions, now):
    tenant = company(sessions, "early", "tenant_verified", consented=now, planned=1)
    devices(sessions, tenant, 5, now)
    with transaction(sessions) as session:
        assert alarms.tell_desk(session, config.settings, now) == 0
