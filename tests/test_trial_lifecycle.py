"""A whole trial on a moving clock: start, T-14 and T-7, the decision, the end, offboarding
sent once per device and verified, offboarded, credentials dropped, the purge.

Two companies start the same day: はなび工業 (Japanese contact) decides to continue, Kestrel
Works (English contact) never answers. Each day the daily job runs twice, and once a new
runtime (a restart) runs it again on the same store: nothing may be repeated. The EDR is a
FakeConnector per tenant, kept across runtimes (it is the EDR, not the service's state).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.connectors.base import AlertRecord, DeviceRecord, DeviceRef
from edrtrial.db import transaction
from edrtrial.models import (
    Application,
    AuditEvent,
    Base,
    Company,
    CompanyAggregate,
    Device,
    OutboxMessage,
    PreDiagnosis,
    ResponseAction,
    Tenant,
    Trial,
)
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import JST, Stamp

import clock
from fakes import FakeConnector
from sandbox_config import settings, write_config

START = clock.TODAY
END = date(2027, 2, 24)  # three months from 2026-11-25: the day before 2027-02-25


def at(day: date, hour: int = 6) -> datetime:
    """`day` at `hour` o'clock in Tokyo (the daily job runs at 06:00 JST)."""
    return datetime.combine(day, time(hour), tzinfo=JST).astimezone(UTC)


def store_company(
    session: Session,
    key: str,
    name: str,
    language: str,
    contact: str,
    devices: list[tuple[str, str]],
) -> int:
    """A verified company with a tenant, an application, a pre-diagnosis and its devices."""
    company = Company(
        key=key,
        name=name,
        contact_name=contact,
        contact_email=f"it@{key}.example.jp",
        language=language,
        state="tenant_verified",
        representative=f"代表 {contact}",
        address=f"東京都千代田区{key}町1-2-3",
        prefecture="東京都",
        industry="製造業",
        capital_yen=10_000_000,
        employees=40,
        contact_phone="03-1234-5678" if language == "ja" else "03-9876-5432",
        corporate_number="1234567890123" if language == "ja" else None,
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="fake", external_id=f"tenant-{key}")
    session.add(tenant)
    session.add(
        Application(
            company_id=company.id,
            received_at=at(START - timedelta(days=30)),
            source="applications.csv line 2",
            fingerprint=hashlib.sha256(key.encode()).hexdigest(),
            raw={"会社名": name, "担当者": contact, "住所": company.address},
            planned_seats=10,
            call_notes=f"{contact}様と電話で確認",
        )
    )
    session.add(
        PreDiagnosis(
            company_id=company.id,
            done_at=at(START - timedelta(days=10)),
            done_by="専門家 鈴木",
            network_notes=f"{name} 本社のフロアにハブ2台",
            free_hub_ports=4,
            existing_utm=True,
            existing_antivirus="Windows Defender",
            edr_users=10,
            security_policy="partial",
        )
    )
    session.flush()
    for source_id, device_name in devices:
        session.add(
            Device(
                tenant_id=tenant.id,
                source_id=source_id,
                name=device_name,
                os_platform="macOS" if device_name.startswith("mac") else "Windows11",
                in_inventory=True,
                first_seen=at(START),
                last_seen=at(START),
                raw={"computerDnsName": device_name},
            )
        )
    session.flush()
    return tenant.id


def machine_id(name: str) -> str:
    """A device id as MDE gives it: a hash that names nothing."""
    return hashlib.sha1(name.encode()).hexdigest()


HANABI = [(machine_id(n), n) for n in ("HANABI-PC1", "HANABI-PC2")]
KESTREL = [(machine_id(n), n) for n in ("KESTREL-PC1", "KESTREL-PC2", "mac-kestrel")]


def edr_of(key: str, devices: list[tuple[str, str]]) -> FakeConnector:
    """The company's EDR: its devices reporting, an alert naming one of them."""
    edr = FakeConnector(tenant_id=f"tenant-{key}")
    edr.clock = lambda: datetime.now(UTC)
    edr.devices = [
        DeviceRecord(
            source_id=source_id,
            name=name,
            os_platform="macOS" if name.startswith("mac") else "Windows11",
            health_status="Active",
            first_seen=at(START),
            last_seen=Stamp.of(at(START + timedelta(days=20))),
        )
        for source_id, name in devices
    ]
    return edr


def add_alert(edr: FakeConnector, key: str, when: datetime, device: tuple[str, str]) -> None:
    source_id = machine_id(f"{key} alert {len(edr.alerts)}")
    edr.alerts[source_id] = AlertRecord(
        source_id=source_id,
        title=f"Suspicious PowerShell download on {device[1]}",
        description=f"powershell.exe fetched payload.ps1 for user {key}\\admin",
        severity="high",
        status="new",
        category="Execution",
        last_update_at=Stamp.of(when),
        created_at=when,
        devices=(DeviceRef(device[0], device[1]),),
        raw={"title": f"Suspicious PowerShell download on {device[1]}"},
    )


class Service:
    """The service over one store: a runtime that can be restarted, the EDRs it talks to."""

    def __init__(self, config: Path, engine: Engine, edrs: dict[str, FakeConnector]) -> None:
        self.config, self.engine, self.edrs = config, engine, edrs
        self.rt = self._open()

    def _open(self) -> Runtime:
        rt = Runtime(
            load_config(self.config), self.engine, load_playbooks(default_playbook_paths())
        )
        with rt.sessions() as session:
            for key, edr in self.edrs.items():
                tenant_id = session.scalar(
                    select(Tenant.id).join(Company).where(Company.key == key)
                )
                assert tenant_id is not None
                rt._connectors[tenant_id] = edr
        return rt

    def restart(self) -> None:
        """A new process on the same store (the old one's connectors are the same EDRs)."""
        self.rt._connectors.clear()
        self.rt = self._open()

    def day(self, day: date, hour: int = 6) -> list[Any]:
        """The day's work at `hour` JST: poll, inventory, desk, and the daily job twice."""
        with clock.travel(at(day, hour)):
            jobs.poll(self.rt)
            jobs.inventory(self.rt)
            jobs.desk(self.rt)
            first = jobs.trial_lifecycle(self.rt)
            second = jobs.trial_lifecycle(self.rt)
        return [first, second]

    def cli(self, day: date, *args: str, code: int = 0) -> Result:
        with clock.travel(at(day, 11)):
            result = CliRunner().invoke(main, ["--config", str(self.config), *args])
        assert result.exit_code == code, result.output
        return result


@pytest.fixture
def service(tmp_path: Path, now: datetime, engine: Engine, database_url: str) -> Iterator[Service]:
    config = write_config(tmp_path / "config.toml", settings(database_url), companies=0)
    with transaction(sessionmaker(engine)) as session:
        store_company(session, "hanabi", "はなび工業株式会社", "ja", "山田 花子", HANABI)
        store_company(session, "kestrel", "Kestrel Works K.K.", "en", "Emily Clark", KESTREL)
    edrs = {"hanabi": edr_of("hanabi", HANABI), "kestrel": edr_of("kestrel", KESTREL)}
    running = Service(config, engine, edrs)
    yield running
    running.rt.close()


def mails_to(sessions: sessionmaker[Session], key: str) -> list[OutboxMessage]:
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.recipient == f"it@{key}.example.jp")
                .order_by(OutboxMessage.id)
            )
        )


def state(sessions: sessionmaker[Session], key: str) -> str:
    with sessions() as session:
        found = session.scalar(select(Company.state).where(Company.key == key))
        assert found is not None
        return found


def offboard_tasks(sessions: sessionmaker[Session], key: str) -> dict[str, str]:
    with sessions() as session:
        rows = session.execute(
            select(Device.name, ResponseAction.status)
            .join(ResponseAction, ResponseAction.device_id == Device.id)
            .join(Tenant, Tenant.id == Device.tenant_id)
            .join(Company, Company.id == Tenant.company_id)
            .where(Company.key == key, ResponseAction.kind == "offboard")
        )
        return {name: status for name, status in rows}


def everything_in(engine: Engine) -> str:
    """Every row of every table, as text: what a reader of the whole store would see."""
    parts = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                parts.append(json.dumps([str(v) for v in row], ensure_ascii=False))
        # The job store and anything else the service keeps beside the ORM's tables.
        names = {t.name for t in Base.metadata.sorted_tables}
        if engine.dialect.name == "sqlite":
            others = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            for (name,) in others:
                if name not in names:
                    parts += [str(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{name}"'))]
    return "\n".join(parts)


def test_a_whole_trial_from_its_start_to_the_purge(service: Service, engine: Engine) -> None:
    sessions = service.rt.sessions
    started = service.cli(START, "trial", "start", "hanabi", "--by", "佐藤")
    assert f"はなび工業株式会社 (hanabi): trial from {START} to {END}" in started.output
    service.cli(START, "trial", "start", "kestrel")
    with sessions() as session:
        trials = {
            t.company_id: (t.starts_on, t.ends_on, t.decision)
            for t in session.scalars(select(Trial))
        }
        start_audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.start")
        ).all()
    assert set(trials.values()) == {(START, END, "undecided")}
    assert {(e.detail["from"], e.detail["to"]) for e in start_audit} == {
        ("tenant_verified", "in_trial")
    }
    assert "佐藤" in {e.on_behalf_of for e in start_audit}

    # Detections during the trial (kept as figures after the purge, never as text).
    add_alert(service.edrs["kestrel"], "kestrel", at(START + timedelta(days=20)), KESTREL[0])
    add_alert(service.edrs["hanabi"], "hanabi", at(START + timedelta(days=21)), HANABI[1])
    service.day(START + timedelta(days=21))
    assert mails_to(sessions, "kestrel") != []  # the alert notice

    # The day before T-14: still in the trial, nothing asked.
    service.day(END - timedelta(days=15))
    assert state(sessions, "hanabi") == "in_trial"
    reminders = lambda key: [  # noqa: E731
        m for m in mails_to(sessions, key) if m.kind == "trial_reminder"
    ]
    assert reminders("hanabi") == [] and reminders("kestrel") == []

    # T-14: both ending, both asked once, each in its language.
    outcome = service.day(END - timedelta(days=14))
    assert outcome[0].ending == 2 and outcome[0].reminders == 2
    assert outcome[1].reminders == 0 and outcome[1].ending == 0
    assert state(sessions, "hanabi") == "ending"
    [ja] = reminders("hanabi")
    [en] = reminders("kestrel")
    assert "無料体験の終了日（2027/02/24（水））" in ja.subject
    assert "継続しない場合" in ja.body_text and "2027/02/25（木）以降" in ja.body_text
    assert "あと14日" in ja.body_text and "EDR体験 サポートデスク" in ja.body_text
    assert en.subject.startswith("[EDR trial] Your free trial ends on Wednesday, 24 February 2027")
    assert "a contract made directly between your company and the EDR's vendor" in en.body_text
    assert "From Thursday, 25 February 2027, the secretariat uninstalls" in en.body_text

    # T-10, then T-7 with a restart in the middle of the day: the T-7 mail once each.
    service.day(END - timedelta(days=10))
    assert len(reminders("hanabi")) == 1
    service.day(END - timedelta(days=7))
    service.restart()
    service.day(END - timedelta(days=7), hour=9)
    assert [m.dedupe_key.rsplit(":", 1)[1] for m in reminders("hanabi")] == ["14", "7"]
    assert [m.dedupe_key.rsplit(":", 1)[1] for m in reminders("kestrel")] == ["14", "7"]
    assert "あと7日" in reminders("hanabi")[1].body_text

    # The secretariat records はなび's answer.
    decided = service.cli(
        END - timedelta(days=5), "trial", "decide", "hanabi", "continue", "--reason", "電話で確認"
    )
    assert "continues with the vendor" in decided.output
    with sessions() as session:
        trial = session.scalars(select(Trial).join(Company).where(Company.key == "hanabi")).one()
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "trial.decided")
        ).one()
    assert trial.decision == "continue" and trial.decided_by.startswith("cli:")
    assert audit.detail["from"] == "undecided" and audit.detail["to"] == "continue"
    assert audit.detail["reason"] == "電話で確認"

    # The last day is still a trial day.
    service.day(END)
    assert state(sessions, "kestrel") == "ending" and offboard_tasks(sessions, "kestrel") == {}

    # The day after: はなび continues, Kestrel is offboarded: told, planned, sent once.
    outcome = service.day(END + timedelta(days=1))
    assert state(sessions, "hanabi") == "continuing"
    assert state(sessions, "kestrel") == "offboarding"
    assert outcome[0].continuing == 1 and outcome[0].planned == 3 and outcome[0].sent == 3
    service.restart()
    service.day(END + timedelta(days=1), hour=12)
    kestrel, hanabi = service.edrs["kestrel"], service.edrs["hanabi"]
    assert sorted(d for d, _ in kestrel.started) == sorted(i for i, _ in KESTREL[:2])  # once
    assert hanabi.started == []
    tasks = offboard_tasks(sessions, "kestrel")
    assert tasks["mac-kestrel"] == "manual"
    [told] = [m for m in mails_to(sessions, "kestrel") if m.kind == "trial_offboarding"]
    assert "ended on Wednesday, 24 February 2027" in told.body_text
    assert "from Thursday, 25 February 2027 the secretariat uninstalls the EDR" in told.body_text
    assert "1 computer(s) cannot be uninstalled remotely" in told.body_text

    # The devices go quiet; the mac is uninstalled by hand and confirmed.
    kestrel.devices = [replace(d, health_status="Inactive") for d in kestrel.devices]
    service.day(END + timedelta(days=3))
    assert offboard_tasks(sessions, "kestrel") == {
        "KESTREL-PC1": "verified",
        "KESTREL-PC2": "verified",
        "mac-kestrel": "manual",
    }
    assert state(sessions, "kestrel") == "offboarding"  # the mac still waits
    service.cli(END + timedelta(days=3), "trial", "uninstalled", "kestrel", "mac-kestrel")
    outcome = service.day(END + timedelta(days=4))
    assert outcome[0].offboarded == 1 and outcome[1].offboarded == 0
    assert state(sessions, "kestrel") == "offboarded"
    [done] = [m for m in mails_to(sessions, "kestrel") if m.kind == "trial_offboarded"]
    assert "all 3 of your computers" in done.body_text
    assert "Enterprise applications" in done.body_text and "select Delete" in done.body_text
    with sessions() as session:
        tenant = session.scalars(select(Tenant).join(Company).where(Company.key == "kestrel")).one()
    assert tenant.connection == {} and tenant.credentials_dropped_at is not None
    assert service.rt.tenants("kestrel") == []
    assert tenant.id not in service.rt._connectors

    # Retention: not a day early; then the purge, once.
    service.day(END + timedelta(days=4 + 89))
    assert state(sessions, "kestrel") == "offboarded"
    outcome = service.day(END + timedelta(days=4 + 90))
    assert outcome[0].purged == 1 and outcome[1].purged == 0
    assert state(sessions, "hanabi") == "continuing"  # a continuing company is kept whole
    with sessions() as session:
        purged = session.scalars(select(Company).where(Company.state == "purged")).one()
        rows = session.scalars(
            select(CompanyAggregate).where(CompanyAggregate.anon_code == purged.anon_code)
        ).all()
    assert purged.anon_code and purged.purged_at is not None
    months = {r.month: r for r in rows}
    assert date(2026, 12, 1) in months and date(2027, 2, 1) in months
    december = months[date(2026, 12, 1)]
    assert december.detections == {"Execution": {"high": 1}} and december.incidents == 1
    assert december.devices_onboarded == 3 and december.decision == "undecided"
    assert december.pre_diagnosis["existing_utm"] is True
    assert december.pre_diagnosis["security_policy"] == "partial"

    store = everything_in(engine)
    for secret in (
        "Kestrel",
        "kestrel",
        "KESTREL",
        "Emily Clark",
        "tenant-kestrel",
        "mac-kestrel",
        "download on KESTREL-PC1",  # the alert's text
        "代表 Emily Clark",  # the representative
        "03-9876-5432",  # the contact's phone
    ):
        assert secret not in store, secret
    assert "はなび工業株式会社" in store and "HANABI-PC1" in store  # the other company's stay
