"""The secretariat's seat report: the CSV it opens in Excel (BOM, Japanese headings, one row
per company, cohort totals, no formula in a cell), `edrtrial seats --csv`, and the weekly
mail that carries the CSV, through a real local SMTP server, sent once a week."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import load_config
from edrtrial.connectors.base import ActionKind
from edrtrial.db import transaction
from edrtrial.models import (
    AuditEvent,
    Cohort,
    Company,
    Device,
    OutboxMessage,
    ReportArchive,
    ResponseAction,
    Tenant,
    Trial,
)
from edrtrial.notify.seat_mail import seat_week
from edrtrial.programme.seats import seat_counts
from edrtrial.reports.seat_report import SEAT_HEADINGS, build_seat_report, seat_csv
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.states import ActionState
from edrtrial.timeutil import jst_date

from sandbox_config import settings, write_config
from test_outbox import Inbox, free_port, start_server

EVIL = '=HYPERLINK("http://evil.example","請求書")'


def add_company(
    session: Session,
    key: str,
    cohort: Cohort | None,
    *,
    name: str = "",
    planned: int = 0,
    cap: int = 300,
    devices: int = 0,
    quiet: int = 0,
    tested: int = 0,
    offboarded: int = 0,
    trial: tuple[date, date] | None = None,
    state: str = "in_trial",
    now: datetime,
) -> Company:
    """A company in `cohort` with `devices` onboarded devices: `quiet` of them last seen 10
        days ago, `tested` with a detection test, and `offboarded` more the EDR offboarded (quiet
    since)."""
    company = Company(
        key=key,
        name=name or key,
        contact_email=f"it@{key}.example.jp",
        planned_seats=planned,
        seat_cap=cap,
        cohort_id=cohort.id if cohort else None,
        state=state,
    )
    session.add(company)
    session.flush()
    tenant = Tenant(company_id=company.id, connector="defender", external_id=f"t-{key}")
    session.add(tenant)
    session.flush()
    for i in range(devices + offboarded):
        device = Device(
            tenant_id=tenant.id,
            source_id=f"{key}-{i}",
            name=f"{key}-pc-{i:03}",
            onboarding_status="Onboarded",
            in_inventory=True,
            last_seen=now - timedelta(days=10 if i < quiet or i >= devices else 1),
            detection_test_at=now - timedelta(days=20) if i < tested else None,
        )
        session.add(device)
        session.flush()
        if i >= devices:
            session.add(
                ResponseAction(
                    dedupe_key=f"offboard:{key}:{i}",
                    tenant_id=tenant.id,
                    device_id=device.id,
                    kind=ActionKind.OFFBOARD.value,
                    status=ActionState.VERIFIED.value,
                )
            )
    if trial:
        session.add(Trial(company_id=company.id, starts_on=trial[0], ends_on=trial[1]))
    session.flush()
    return company


@pytest.fixture
def programme(sessions: sessionmaker[Session], now: datetime) -> date:
    """Two cohorts: "acme" near its cap and "acme-2" (a key that starts like it) over it in
        the first; "beta" with quiet, tested and offboarded devices, and a company whose name is
        a formula, in the second; one company in no cohort; and three not in the programme (refused,
    waiting, purged). Returns today (JST)."""
    today = jst_date(now)
    with transaction(sessions) as session:
        first = Cohort(key="c1", name="第1期", course="edr", capacity=50)
        second = Cohort(key="c2", name="第2期", course="edr", capacity=50)
        session.add_all([first, second])
        session.flush()
        trial = (today - timedelta(days=30), today + timedelta(days=60))
        add_company(session, "acme", first, name="株式会社アクメ", planned=10, cap=10,
                    devices=9, tested=2, trial=trial, now=now)  # fmt: skip
        add_company(session, "acme-2", first, name="アクメ物流株式会社", planned=10, cap=10,
                    devices=11, trial=trial, now=now)  # fmt: skip
        add_company(session, "beta", second, name="ベータ商事", planned=20, devices=5,
                    quiet=2, tested=1, offboarded=3, now=now,
                    trial=(today - timedelta(days=100), today - timedelta(days=5)))  # fmt: skip
        add_company(session, "gamma", second, name=EVIL, planned=3, devices=1, now=now)
        add_company(session, "solo", None, name="-ソロ工房", planned=2, now=now)
        # Not in the programme: their planned seats are nobody's.
        add_company(session, "refused", first, planned=50, state="refused", now=now)
        add_company(session, "waiting", second, planned=50, state="waiting_list", now=now)
        add_company(session, "A7K2", second, planned=50, devices=2, state="purged", now=now)
    return today


def read_csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def by_key(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    header, *body = rows
    return {row[0]: dict(zip(header, row, strict=True)) for row in body if row[0] != "合計"}


def totals(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    header, *body = rows
    return {row[1]: dict(zip(header, row, strict=True)) for row in body if row[0] == "合計"}


def test_the_csv_opens_in_excel_with_a_row_per_company_and_the_cohort_totals(
    sessions, programme, now
):
    with sessions() as session:
        content = seat_csv(build_seat_report(seat_counts(session, now), programme))

    assert content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads it as UTF-8
    assert b"\r\n" in content and content.count(b"\n") == content.count(b"\r\n")
    rows = read_csv(content)
    assert tuple(rows[0]) == SEAT_HEADINGS
    assert rows[0][:4] == ["企業キー", "企業名", "コホート", "計画台数"]
    companies = by_key(rows)
    assert list(companies) == ["acme", "acme-2", "beta", "gamma", "solo"]

    acme, acme2, beta = companies["acme"], companies["acme-2"], companies["beta"]
    # Each row is its own company's, even where the keys start alike.
    assert (acme["企業名"], acme["インストール台数"], acme["上限の状況"]) == (
        "株式会社アクメ", "9", "上限間近",
    )  # fmt: skip
    assert (acme2["企業名"], acme2["インストール台数"], acme2["上限の状況"]) == (
        "アクメ物流株式会社", "11", "上限超過",
    )  # fmt: skip
    assert acme["検知テスト確認済"] == "2" and acme2["検知テスト確認済"] == "0"
    assert (beta["インストール台数"], beta["7日以内に稼働"], beta["アンインストール済"]) == (
        "5", "3", "3",
    )  # fmt: skip
    assert beta["上限の状況"] == "" and beta["上限台数"] == "300"
    assert acme["体験終了日"] == (programme + timedelta(days=60)).isoformat()
    assert acme["残り日数"] == "60" and beta["残り日数"] == "-5"
    assert acme["コホート"] == "第1期" and companies["solo"]["コホート"] == ""
    # Text that Excel would run as a formula is kept as text; counts stay numbers.
    assert companies["gamma"]["企業名"] == "'" + EVIL
    assert companies["solo"]["企業名"] == "'-ソロ工房"

    sums = totals(rows)
    assert list(sums) == ["第1期（2社）", "第2期（2社）", "コホートなし（1社）", "全体（5社）"]
    numeric = SEAT_HEADINGS[3:9]
    for heading in numeric:
        first = sum(int(companies[k][heading]) for k in ("acme", "acme-2"))
        assert int(sums["第1期（2社）"][heading]) == first, heading
        every = sum(int(c[heading]) for c in companies.values())
        assert int(sums["全体（5社）"][heading]) == every, heading
        cohorts = [t for name, t in sums.items() if not name.startswith("全体")]
        assert sum(int(t[heading]) for t in cohorts) == every, heading
    assert sums["第1期（2社）"]["上限の状況"] == "上限超過1社、上限間近1社"
    assert sums["第2期（2社）"]["上限の状況"] == ""


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = start_server(inbox, free_port())
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def config(tmp_path: Path, database_url: str, smtp, programme) -> Path:
    data = settings(database_url, mail_dir=tmp_path / "mail")
    data["mail"]["smtp"] = {"host": "127.0.0.1", "port": smtp[1], "starttls": False}
    data["programme"]["secretariat_email"] = "jimukyoku@example.jp"
    data["reports"] = {"archive_dir": str(tmp_path / "archive")}
    return write_config(tmp_path / "config.toml", data, companies=0)


def cli(config: Path, *args: str) -> Result:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(config), *args], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result


def test_seats_shows_the_cohort_totals_and_writes_the_csv_owner_only(config, tmp_path):
    target = tmp_path / "out" / "seats.csv"
    shown = cli(config, "seats", "--csv", str(target))
    assert f"CSV written to {target}" in shown.stdout
    assert "第1期" in shown.stdout and "all cohorts" in shown.stdout
    total = next(line for line in shown.stdout.splitlines() if "all cohorts" in line)
    assert total.split()[2:7] == ["5", "45", "26", "3", "24"]  # companies, plan, onb., offb., 7d
    assert "acme-2 is over its cap: 11 of 10 seats" in shown.stdout
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert by_key(read_csv(target.read_bytes()))["acme-2"]["インストール台数"] == "11"


def test_the_weekly_mail_carries_the_csv_once_a_week(config, smtp, sessions, programme):
    inbox, _ = smtp
    assert "seat-report: 1 seat report queued" in cli(config, "run-job", "seat-report").stdout
    again = cli(config, "run-job", "seat-report").stdout
    assert "seat-report: 0 seat reports queued (the last whole week's went before)" in again
    cli(config, "run-job", "outbox")

    [mail] = inbox.messages
    assert mail["To"] == "jimukyoku@example.jp"
    start, end = seat_week(programme)  # last week, Monday to Sunday
    assert (start.weekday(), end - start) == (0, timedelta(days=6))
    assert end < programme <= end + timedelta(days=7)
    assert mail["Subject"] == f"【EDR体験】台数レポート（{start}〜{end}） 上限超過1社"
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "インストール台数: 26台" in text and "第1期（2社）" in text
    assert (
        "アクメ物流株式会社（acme-2）: インストール台数が上限を超えています 11台／上限10台" in text
    )
    assert "株式会社アクメ（acme）: インストール台数が上限に近づいています 9台／上限10台" in text
    [attached] = list(mail.iter_attachments())
    assert attached.get_filename() == f"seats_{programme}.csv"
    assert attached.get_content_type() == "text/csv"
    content = attached.get_payload(decode=True)
    assert content.startswith(b"\xef\xbb\xbf")
    assert by_key(read_csv(content))["acme"]["上限の状況"] == "上限間近"

    with sessions() as session:
        [record] = session.scalars(select(ReportArchive)).all()
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "report.queued"))
        [message] = session.scalars(select(OutboxMessage)).all()
    assert (record.kind, record.period_start, record.period_end) == ("seats", start, end)
    assert record.recipients == ["jimukyoku@example.jp"] and message.report_id == record.id
    assert Path(record.path).read_bytes() == content
    assert stat.S_IMODE(os.stat(record.path).st_mode) == 0o600
    assert event.target == "secretariat" and event.detail["report_id"] == record.id

    # Run again later in the same week, nothing new; the next week, the next week's report.
    monday = programme - timedelta(days=programme.weekday())
    runtime = Runtime.open(load_config(config))
    try:
        for day in range(7):
            assert jobs.seat_report(runtime, today=monday + timedelta(days=day)) == 0
        assert jobs.seat_report(runtime, today=monday + timedelta(days=7)) == 1
        assert jobs.seat_report(runtime, today=monday + timedelta(days=9)) == 0
    finally:
        runtime.close()
    with sessions() as session:
        weeks = [(r.period_start, r.period_end) for r in session.scalars(select(ReportArchive))]
    assert weeks == [(start, end), (start + timedelta(days=7), end + timedelta(days=7))]


def test_the_seat_mail_is_scheduled_only_when_switched_on(tmp_path, database_url, engine):
    from edrtrial.service import scheduler

    data = settings(database_url)
    ids = {}
    for on in (True, False):
        data["reports"] = {"seat_mail": on}
        runtime = Runtime.open(
            load_config(write_config(tmp_path / f"c{on}.toml", data, companies=0))
        )
        sched = scheduler.build_scheduler(runtime)
        try:
            ids[on] = {job.id: job for job in sched.get_jobs()}
        finally:
            sched.shutdown(wait=False)
            runtime.close()
    assert "seat-report" in ids[True] and "seat-report" not in ids[False]
    trigger = str(ids[True]["seat-report"].trigger)
    assert "day_of_week='mon'" in trigger and "hour='8'" in trigger and "minute='30'" in trigger

    # Switched off, a run by hand mails nothing either, as the company reports' jobs.
    off = tmp_path / "cFalse.toml"
    assert "seat-report: 0 seat reports" in cli(off, "run-job", "seat-report").stdout
    with Session(engine) as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_an_uninstalled_device_still_seen_this_week_is_not_an_active_or_tested_seat(sessions, now):
    """The day after the trial's end the EDR uninstalls every device; seen an hour before,
    each must not read as "8 active, 7 tested of 0 onboarded" to the secretariat."""
    with transaction(sessions) as session:
        company = add_company(session, "midori", None, planned=10, devices=0, now=now)
        tenant = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
        assert tenant is not None
        for i in range(8):
            device = Device(
                tenant_id=tenant.id, source_id=f"m-{i}", name=f"pc-{i}",
                onboarding_status="Onboarded", in_inventory=True,
                last_seen=now - timedelta(hours=1),
                detection_test_at=now - timedelta(days=30) if i < 7 else None,
            )  # fmt: skip
            session.add(device)
            session.flush()
            session.add(
                ResponseAction(
                    dedupe_key=f"offboard:midori:{i}",
                    tenant_id=tenant.id,
                    device_id=device.id,
                    kind=ActionKind.OFFBOARD.value,
                    status=ActionState.SUCCEEDED.value,
                )  # fmt: skip
            )
    with sessions() as session:
        [row] = seat_counts(session, now)
        rows = read_csv(seat_csv(build_seat_report([row], jst_date(now))))
    assert (row.onboarded, row.offboarded, row.active_7d, row.verified) == (0, 8, 0, 0)
    midori = by_key(rows)["midori"]
    assert (midori["インストール台数"], midori["7日以内に稼働"]) == ("0", "0")
    assert midori["アンインストール済"] == "8"
