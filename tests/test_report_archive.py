"""The report archive beyond the periodic report: the incident report's PDF, archived and
attached at resolution; the purge of a company's archived files; the monthly job."""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_desk_workflow import POLICY, SUMMARY, T0, act, add_alert, only_ticket, tenant_id, triage
from test_report_delivery import (
    SETTINGS,
    add_company,
    pdf_text,
    queue,
    send_all,
    smtp,
)

from edrtrial.config import ProgrammeConfig, ReportsConfig, SchedulesConfig
from edrtrial.db import transaction
from edrtrial.desk import operator
from edrtrial.models import AuditEvent, Company, OutboxMessage, ReportArchive, Tenant, Trial
from edrtrial.notify.mail import SmtpTransport
from edrtrial.programme.purge import purge_company
from edrtrial.service import jobs, overdue

from conftest import add_tenant
from test_outbox import Inbox

__all__ = ["smtp", "tenant_id"]  # fixtures shared with the modules they come from

PROGRAMME = ProgrammeConfig(
    name="東京都中小企業サイバーセキュリティ基本対策事業",
    secretariat="運営事務局",
    secretariat_contact="電話 03-0000-1111",
)


def archiving(tmp_path: Path):  # type: ignore[no-untyped-def]
    return dataclasses.replace(POLICY, programme=PROGRAMME, archive_dir=tmp_path / "reports")


def test_the_incident_report_goes_with_its_pdf_under_the_letterhead(
    sessions: sessionmaker[Session],
    tenant_id: int,
    tmp_path: Path,
    smtp: tuple[Inbox, SmtpTransport],
) -> None:
    inbox, transport = smtp
    add_alert(sessions, tenant_id, 1, device_names=["PC-<b>KEIRI</b>\u202eexe.pdf"])
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(sessions, operator.resolve, tid, SUMMARY, "cli:sato", T0, archiving(tmp_path))
    assert send_all(sessions, transport).failed == 0  # the desk's notices, and the report
    [mail] = [m for m in inbox.messages if "インシデント対応のご報告" in m["Subject"]]
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"EDRインシデント報告_acme_受付番号{tid}.pdf"
    text = pdf_text(attachment.get_content())
    for expected in (
        "東京都中小企業サイバーセキュリティ基本対策事業",  # the letterhead
        "電話 03-0000-1111",
        f"インシデント対応のご報告（受付番号 #{tid}）",
        "株式会社アクメ",
        "インシデントの原因",
        "添付ファイルの実行",  # the operator's summary
    ):
        assert expected in text, expected
    pages = text.count("\f")
    numbers = [tuple(map(int, n)) for n in re.findall(r"(\d+)\s*/\s*(\d+)\s*\f", text)]
    assert numbers == [(n, pages) for n in range(1, pages + 1)]  # "n / N" on every page
    assert "<b>" in text and "\u202e" not in text  # a device's name stays text, its controls shown
    with sessions() as session:
        record = session.scalars(select(ReportArchive)).one()
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "incident-report")
        ).one()
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued")
        ).one()
    assert (record.kind, record.ticket_id, record.language) == ("incident", tid, "ja")
    assert message.report_id == record.id and record.recipients == ["it@acme.example.jp"]
    assert event.detail["report"] == record.id and event.actor == "cli:sato"
    assert Path(record.path).read_bytes() == attachment.get_content()


def test_an_english_company_s_incident_pdf_is_english(
    sessions: sessionmaker[Session], tenant_id: int, tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        session.get_one(Tenant, tenant_id).company.language = "en"
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    summary = dict(SUMMARY, cause="An attachment was opened")
    act(sessions, operator.resolve, tid, summary, "cli:sato", T0, archiving(tmp_path))
    with sessions() as session:
        record = session.scalars(select(ReportArchive)).one()
    assert record.filename == f"EDR-incident-report_acme_ticket{tid}.pdf"
    text = pdf_text(Path(record.path).read_bytes())
    assert f"Incident report (ticket #{tid})" in text
    assert "An attachment was opened" in text and "Summary of the incident" in text
    assert "インシデント対応のご報告" not in text


def test_a_purged_company_s_archived_files_go_and_their_records_name_nothing(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        company = add_company(session)
        other = add_company(session, key="globex", name="Globex", email="it@globex.example")
        mine = queue(session, company.id, date(2026, 11, 1), date(2026, 11, 7), tmp_path)
        kept = queue(session, other.id, date(2026, 11, 1), date(2026, 11, 7), tmp_path)
        company.state, company.state_since = "offboarded", NOW_PURGE
    path, folder = Path(mine.record.path), Path(mine.record.path).parent
    assert path.is_file()
    with transaction(sessions) as session:
        stored = session.scalars(select(Company).where(Company.key == "acme")).one()
        purge_company(session, PROGRAMME, stored, actor="trial-lifecycle", at=NOW_PURGE)
    assert not path.exists() and not folder.exists()  # the folder named the company too
    assert Path(kept.record.path).is_file()  # another company's report stays whole
    with sessions() as session:
        record = session.get_one(ReportArchive, mine.record.id)
        assert (record.path, record.filename, record.subject, record.recipients) == ("", "", "", [])
        assert "acme" not in record.dedupe_key
        assert (record.kind, record.period_start) == ("weekly", date(2026, 11, 1))
        assert session.get_one(ReportArchive, kept.record.id).recipients == ["it@globex.example"]


NOW_PURGE = datetime(2027, 6, 1, 1, 0, tzinfo=UTC)


def test_the_monthly_job_reports_last_month_to_each_company_in_trial_once(
    sessions: sessionmaker[Session], tmp_path: Path, caplog
) -> None:
    runtime = FakeRuntime(sessions, tmp_path)
    in_trial = add_tenant(sessions, "sakura", "桜製作所")
    ended = add_tenant(sessions, "midori", "緑商事")
    parked = add_tenant(sessions, "aozora", "青空デザイン")
    with transaction(sessions) as session:
        for tid, starts, ends in (
            (in_trial, date(2026, 10, 20), date(2027, 1, 19)),
            (ended, date(2026, 6, 1), date(2026, 9, 30)),  # ended before October
            (parked, date(2026, 10, 1), date(2026, 12, 31)),
        ):
            company_id = session.get_one(Tenant, tid).company_id
            session.add(Trial(company_id=company_id, starts_on=starts, ends_on=ends))
        session.get_one(Tenant, parked).state = "parked"
    with caplog.at_level(logging.ERROR):
        assert jobs.monthly_reports(runtime, date(2026, 11, 1)) == 1  # type: ignore[arg-type]
    assert "monthly report for aozora withheld: its tenant is parked" in caplog.text
    assert jobs.monthly_reports(runtime, date(2026, 11, 1)) == 0  # type: ignore[arg-type]
    with sessions() as session:
        [record] = session.scalars(select(ReportArchive)).all()
        company = session.get_one(Company, record.company_id)
    assert (company.key, record.kind) == ("sakura", "monthly")
    assert (record.period_start, record.period_end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert record.actor == "monthly-reports"

    runtime.switch(monthly=False)
    assert jobs.monthly_reports(runtime, date(2026, 12, 1)) == 0  # type: ignore[arg-type]
    runtime.switch(weekly=False)
    assert jobs.weekly_reports(runtime, date(2026, 11, 2)) == 0  # type: ignore[arg-type]


def test_last_month_is_the_calendar_month_before_in_tokyo() -> None:
    assert jobs.last_month(date(2026, 11, 1)) == (date(2026, 10, 1), date(2026, 10, 31))
    assert jobs.last_month(date(2027, 1, 28)) == (date(2026, 12, 1), date(2026, 12, 31))
    assert jobs.last_month(date(2028, 3, 1)) == (date(2028, 2, 1), date(2028, 2, 29))


class FakeRuntime:
    """What the report jobs use of the runtime: the store, the config, the clock, tenants."""

    def __init__(self, sessions: sessionmaker[Session], tmp_path: Path) -> None:
        self.sessions = sessions
        self.settings = SETTINGS
        self.tmp_path = tmp_path

    def switch(self, **switches: bool) -> None:
        reports = self.settings.reports.model_copy(update=switches)
        self.settings = self.settings.model_copy(update={"reports": reports})

    @property
    def config(self):  # type: ignore[no-untyped-def]
        from edrtrial.config import Config

        return Config(self.settings, self.tmp_path / "config.toml")

    def clock(self) -> datetime:
        return datetime(2026, 11, 1, 0, 0, tzinfo=UTC) + timedelta(hours=1)

    def tenants(self, company_key: str | None = None):  # type: ignore[no-untyped-def]
        from edrtrial.service.runtime import TenantRef

        with self.sessions() as session:
            rows = session.execute(
                select(Tenant, Company.key)
                .join(Company, Tenant.company_id == Company.id)
                .order_by(Company.key)
            ).all()
        return [TenantRef(t.id, key, t.external_id, t.state) for t, key in rows]


def test_status_expects_the_monthly_report_on_its_day_and_no_report_switched_off() -> None:
    schedules = SchedulesConfig(monthly_report="3 07:45")
    jst = timezone(timedelta(hours=9))
    assert overdue.last_time("3 07:45", datetime(2026, 11, 25, 12, 0, tzinfo=jst)) == datetime(
        2026, 11, 3, 7, 45, tzinfo=jst
    )
    assert overdue.last_time("3 07:45", datetime(2026, 1, 2, 12, 0, tzinfo=jst)) == datetime(
        2025, 12, 3, 7, 45, tzinfo=jst
    )
    names = {job.job: job for job in overdue.expected(schedules, [])}
    assert names["monthly-reports"].schedule == "monthly, day 3 at 07:45 JST"
    off = ReportsConfig(weekly=False, monthly=False)
    assert not {"weekly-reports", "monthly-reports"} & {
        j.job for j in overdue.expected(schedules, [], off)
    }
