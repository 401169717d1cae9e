"""Queueing a company's report: one mail per company and period, however often the job runs,
with its PDF archived and attached; a re-send is deliberate, and sends what was archived."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, date, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig, MailConfig, Settings
from edrtrial.db import transaction
from edrtrial.models import Alert, AuditEvent, Company, OutboxMessage, ReportArchive, Tenant
from edrtrial.notify.mail import FileTransport, SmtpTransport
from edrtrial.notify.outbox import DeliveryStats, deliver_due
from edrtrial.notify.report_mail import (
    QueuedReport,
    queue_detection_report,
    resend_archived,
)

from test_outbox import Inbox, smtp  # noqa: F401  (the fixture: a local SMTP server)

NOW = datetime(2026, 11, 9, 0, 0, tzinfo=UTC)
DESK = DeskConfig(name="EDR体験 運営事務局", email="desk@example.jp", phone="03-0000-0000")
SETTINGS = Settings(mail=MailConfig(from_address="reports@example.jp"), desk=DESK)


def queue(
    session: Session,
    company_id: int,
    start: date,
    end: date,
    tmp_path: Path,
    *,
    resend: bool = False,
    kind: str = "weekly",
) -> QueuedReport:
    return queue_detection_report(
        session,
        company_id,
        start,
        end,
        now=NOW,
        settings=SETTINGS,
        archive_dir=tmp_path / "reports",
        kind=kind,
        resend=resend,
    )


def add_company(
    session: Session,
    key: str = "acme",
    name: str = "株式会社アクメ",
    email: str = "yamada@example.jp",
    language: str = "ja",
) -> Company:
    company = Company(
        key=key, name=name, contact_name="山田 太郎", contact_email=email, language=language
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="defender", external_id=f"tid-{key}")
    session.add(tenant)
    session.flush()
    session.add(
        Alert(
            tenant_id=tenant.id,
            source="mde",
            source_id=f"a1-{key}",
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
        first = queue(session, company.id, start, end, tmp_path)
    with transaction(sessions) as session:
        again = queue(session, company.id, start, end, tmp_path)
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        assert session.scalar(select(func.count()).select_from(ReportArchive)) == 1

    message = first.message
    assert again.message.id == message.id and (first.new, again.new) == (True, False)
    assert message.dedupe_key == "report:weekly:acme:2026-11-01:2026-11-07:0"
    assert message.report_id == first.record.id
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
        "report": first.record.id,
        "file": "EDR検知レポート_acme_2026-11-01_2026-11-07.pdf",
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
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "EDR検知レポート_acme_2026-11-01_2026-11-07.pdf"


def pdf_text(content: bytes) -> str:
    """The PDF's text as a reader copies it (poppler's pdftotext)."""
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=content, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def send_all(sessions: sessionmaker[Session], transport: SmtpTransport) -> DeliveryStats:
    return deliver_due(
        sessions, transport, sender="noreply@example.jp", sender_name="EDR体験", max_attempts=3
    )


def test_the_report_mail_carries_its_pdf_through_smtp_and_a_resend_carries_the_archived_file(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    smtp: tuple[Inbox, SmtpTransport],  # noqa: F811
) -> None:
    inbox, transport = smtp
    start, end = date(2026, 11, 1), date(2026, 11, 7)
    with transaction(sessions) as session:
        company = add_company(session)
        first = queue(session, company.id, start, end, tmp_path)
    assert send_all(sessions, transport).sent == 1
    [mail] = inbox.messages
    assert mail["To"] == "yamada@example.jp"
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "EDR検知レポート_acme_2026-11-01_2026-11-07.pdf"
    content = attachment.get_content()
    assert content.startswith(b"%PDF-")
    text = pdf_text(content)
    assert "株式会社アクメ" in text
    assert "2026/11/01" in text and "2026/11/07" in text  # the period
    archived = Path(first.record.path)
    assert archived.read_bytes() == content  # the mail attached the archived file itself
    assert archived.is_relative_to(tmp_path / "reports" / "acme")
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600

    # Asked again without resend: nothing new is archived or sent.
    with transaction(sessions) as session:
        assert not queue(session, company.id, start, end, tmp_path).new
    assert send_all(sessions, transport).sent == 0

    # The archived report re-sent on purpose: the same bytes, to another address, audited.
    with transaction(sessions) as session:
        again = resend_archived(
            session, first.record.id, actor="cli:sato", now=NOW, to="shacho@example.jp"
        )
        assert (again.record.sequence, again.message.dedupe_key) == (
            1,
            "report:weekly:acme:2026-11-01:2026-11-07:1",
        )
        assert again.record.path != first.record.path
    assert send_all(sessions, transport).sent == 1
    resent = inbox.messages[-1]
    assert resent["To"] == "shacho@example.jp" and resent["Subject"] == mail["Subject"]
    [copy] = list(resent.iter_attachments())
    assert copy.get_content() == content and copy.get_filename() == attachment.get_filename()
    with sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.actor, e.detail.get("resend")) for e in events] == [
        ("weekly-reports", None),
        ("cli:sato", 1),
    ]
    assert events[1].detail["recipients"] == ["shacho@example.jp"]
    assert events[1].detail["of"] == first.record.id


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_missing_or_altered_archive_file_fails_the_mail_never_sends_it_bare(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    smtp: tuple[Inbox, SmtpTransport],  # noqa: F811
    damage: str,
) -> None:
    inbox, transport = smtp
    with transaction(sessions) as session:
        company = add_company(session)
        queued = queue(session, company.id, date(2026, 11, 1), date(2026, 11, 7), tmp_path)
    archived = Path(queued.record.path)
    if damage == "missing":
        archived.unlink()
    else:
        archived.write_bytes(archived.read_bytes() + b"%")
    stats = send_all(sessions, transport)
    assert (stats.sent, stats.failed) == (0, 1)
    assert inbox.messages == []
    with sessions() as session:
        message = session.get_one(OutboxMessage, queued.message.id)
    assert message.status == "failed"
    assert len(message.last_error.splitlines()) == 1
    assert str(archived) in message.last_error or archived.name in message.last_error
    assert message.last_error.startswith("UndeliverableError: ")


def test_an_english_company_s_report_is_archived_in_english_and_monthly_apart_from_weekly(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        company = add_company(
            session, key="globex", name="Globex KK", email="it@globex.example", language="en"
        )
        weekly = queue(session, company.id, date(2026, 11, 1), date(2026, 11, 7), tmp_path)
        monthly = queue(
            session, company.id, date(2026, 10, 1), date(2026, 10, 31), tmp_path, kind="monthly"
        )
        assert weekly.new and monthly.new
        assert weekly.record.filename == "EDR-report_globex_2026-11-01_2026-11-07.pdf"
        assert (weekly.record.language, weekly.record.kind) == ("en", "weekly")
        assert (monthly.record.kind, monthly.record.sequence) == ("monthly", 0)
        assert monthly.message.dedupe_key == "report:monthly:globex:2026-10-01:2026-10-31:0"
        assert Path(monthly.record.path).parent == Path(weekly.record.path).parent


def test_one_company_s_report_is_never_another_s_even_with_a_key_that_starts_alike(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    period = (date(2026, 11, 1), date(2026, 11, 7))
    with transaction(sessions) as session:
        acme = add_company(session)
        acme2 = add_company(session, key="acme-kk", name="アクメ二", email="b@example.jp")
        one = queue(session, acme.id, *period, tmp_path)
        two = queue(session, acme2.id, *period, tmp_path)
        assert two.new and two.record.id != one.record.id
        assert two.message.recipient == "b@example.jp"
        assert pdf_text(Path(two.record.path).read_bytes()).count("株式会社アクメ") == 0
