"""Queueing the weekly report: one mail per company and period, however often the job runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig, MailConfig, Settings
from edrtrial.db import transaction
from edrtrial.models import Alert, AuditEvent, Company, OutboxMessage, Tenant
from edrtrial.notify.mail import FileTransport
from edrtrial.notify.outbox import deliver_due
from edrtrial.notify.report_mail import queue_detection_report

NOW = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)
DESK = DeskConfig(name="EDR体験 運営事務局", email="desk@example.jp", phone="03-0000-0000")
SETTINGS = Settings(mail=MailConfig(from_address="reports@example.jp"), desk=DESK)


def add_company(session: Session) -> Company:
    company = Company(
        key="acme",
        name="株式会社アクメ",
        contact_name="山田 太郎",
        contact_email="yamada@example.jp",
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="defender", external_id="tid-acme")
    session.add(tenant)
    session.flush()
    session.add(
        Alert(
            tenant_id=tenant.id,
            source="mde",
            source_id="a1",
            title="Phish <b>",
            severity="high",
            category="InitialAccess",
            device_names=["pc-01"],
            created_at=datetime(2026, 11, 3, 2, tzinfo=UTC),
        )
    )
    session.flush()
    return company


def test_report_is_queued_once_and_delivered(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    start, end = date(2026, 11, 1), date(2026, 11, 7)
    with transaction(sessions) as session:
        company = add_company(session)
        first = queue_detection_report(session, company.id, start, end, now=NOW, settings=SETTINGS)
    with transaction(sessions) as session:
        again = queue_detection_report(session, company.id, start, end, now=NOW, settings=SETTINGS)
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1

    message = first.message
    assert again.message.id == message.id
    assert message.dedupe_key == "report:detection:acme:2026-11-01:2026-11-07"
    assert (message.kind, message.recipient) == ("detection_report", "yamada@example.jp")
    assert message.tenant_id is not None
    assert first.html == message.body_html and again.html == message.body_html
    with sessions() as session:  # queued twice, mailed once, audited once
        [event] = session.scalars(select(AuditEvent)).all()
    assert (event.action, event.actor, event.at, event.target) == (
        "report.queued",
        "weekly-reports",
        NOW,
        "company:acme",
    )
    assert event.tenant_id == message.tenant_id
    assert event.detail == {
        "kind": "detection_report",
        "company": "acme",
        "period": {"from": "2026-11-01", "to": "2026-11-07"},
        "recipients": ["yamada@example.jp"],
        "subject": message.subject,
        "outbox_id": message.id,
    }
    assert "Phish &lt;b&gt;" in first.html and "メールの添付ファイルとURLに注意する" in first.html

    outbox_dir = tmp_path / "mail"
    stats = deliver_due(
        sessions,
        FileTransport(outbox_dir),
        sender="noreply@example.jp",
        sender_name="EDR体験 運営事務局",
        max_attempts=3,
    )
    assert stats.sent == 1
    written = outbox_dir / f"{message.id}-detection-report.eml"
    mail = BytesParser(policy=policy.default).parsebytes(written.read_bytes())
    assert mail["Subject"] == "【EDR体験】週次検知レポート（2026/11/01〜2026/11/07）株式会社アクメ"
    assert mail["To"] == "yamada@example.jp"
