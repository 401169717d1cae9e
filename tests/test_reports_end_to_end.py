"""Every report of the programme, end to end, as the service sends them: the sandbox's sample
programme (seeded as `serve --with-sandbox` seeds an empty store) polled once, the weekly,
monthly and seat-report jobs run through the CLI, and their mail delivered through a real
SMTP server (aiosmtpd); then what each company and the secretariat find in their inbox, what
the archive lists and re-sends, the incident report of a resolved ticket, and the cohort's
anonymised results.

The dates count from the test's clock: last week (the seven days before today) holds the
sandbox's alerts, last month the devices onboarded then; midori-shoji's trial ended before
last week began, so it gets a monthly report and no weekly one."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.models import Company, Tenant
from edrtrial.notify.seat_mail import seat_week
from edrtrial.programme.sample import SAMPLE_COHORT, seed_sample_programme
from edrtrial.sandbox import SAMPLE_TENANTS, SandboxServer
from edrtrial.service.jobs import last_month, report_period
from edrtrial.states import JourneyState
from edrtrial.timeutil import jst_date, parse_iso

import clock
from sandbox_config import sample_world, serving, settings, write_config
from test_outbox import Inbox, free_port, start_server

SAKURA, MIDORI, AOZORA = SAMPLE_TENANTS[:3]
COMPANIES = (SAKURA, MIDORI, AOZORA)
CONTACTS = {
    SAKURA.key: "it@sakura.example.jp",
    MIDORI.key: "soumu@midori.example.jp",
    AOZORA.key: "office@aozora.example.jp",
}
SECRETARIAT = "desk@example.jp"  # no programme.secretariat_email: the desk's address


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sample tenants, their devices and alerts made at the test's now."""
    with serving(sample_world(11, actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    controller = start_server(box, free_port())
    yield box, controller.port
    controller.stop()


@pytest.fixture
def config(tmp_path: Path, sandbox: SandboxServer, database_url: str, inbox, now) -> Path:
    """The programme's app on the sandbox, mail through the local SMTP server, and the store
    seeded with the sample programme as `serve --with-sandbox` seeds an empty one."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    data["mail"]["smtp"] = {"host": "127.0.0.1", "port": inbox[1], "starttls": False}
    data["reports"] = {"archive_dir": str(tmp_path / "reports")}
    path = write_config(tmp_path / "config.toml", data, companies=0)
    cli(path, "db", "upgrade")
    loaded = load_config(path)
    engine = make_engine(loaded.database_url)
    try:
        with transaction(make_sessions(engine)) as session:
            seeded = seed_sample_programme(
                session, loaded.settings.programme, sandbox.world.tenants, at=now
            )
    finally:
        engine.dispose()
    assert seeded == 3
    return path


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        main, ["--config", str(config), *args], env={"COLUMNS": "100"}, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result


def said(config: Path, *args: str) -> str:
    """What the command printed for the operator (the service's log lines left out)."""
    return "\n".join(
        line for line in cli(config, *args).stdout.splitlines() if " INFO " not in line
    )


def pdf_text(content: bytes) -> str:
    """The PDF's text in the order it was written (`-raw`): a cell's lines follow each other,
    so a device name wrapped in its narrow cell is whole once `squeezed`."""
    done = subprocess.run(
        ["pdftotext", "-raw", "-", "-"], input=content, capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def squeezed(text: str) -> str:
    """The text without white space: a device name wrapped in a narrow cell reads whole."""
    return re.sub(r"\s+", "", text)


def attachment(mail: EmailMessage) -> tuple[str, bytes]:
    """The one file the mail attaches: its name and its bytes as a reader saves them."""
    [part] = list(mail.iter_attachments())
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    return str(part.get_filename()), content


def devices(sandbox: SandboxServer, tenant_id: str) -> set[str]:
    return {m["computerDnsName"] for m in sandbox.world.list_machines(tenant_id, [], 0, 10000)}


def alerted(sandbox: SandboxServer, tenant_id: str, period: tuple[date, date]) -> set[str]:
    """The devices the tenant's alerts of the period (Tokyo days) name."""
    return {
        evidence["deviceDnsName"]
        for alert in sandbox.world.alerts(tenant_id)
        if period[0] <= jst_date(parse_iso(alert["createdDateTime"])) <= period[1]
        for evidence in alert["evidence"]
        if evidence.get("deviceDnsName")
    }


def reports_to(box: Inbox, address: str, kind: str) -> list[EmailMessage]:
    return [m for m in box.messages if m["To"] == address and kind in m["Subject"]]


def test_the_reports_reach_each_company_and_the_secretariat_once_and_can_be_resent(
    tmp_path, config, sandbox, inbox
):
    box, _ = inbox
    today = clock.TODAY
    week, month, seat_period = report_period(today), last_month(today), seat_week(today)
    cli(config, "poll")

    assert said(config, "run-job", "weekly-reports") == "weekly-reports: 2 reports queued"
    assert said(config, "run-job", "monthly-reports") == "monthly-reports: 3 reports queued"
    assert said(config, "run-job", "seat-report") == "seat-report: 1 seat report queued"
    assert said(config, "run-job", "outbox").startswith("outbox: 6 sent")
    received = len(box.messages)

    # Each company in its trial last week: its weekly report, its PDF attached.
    own = {t.key: devices(sandbox, t.tenant_id) for t in COMPANIES}
    seen = {t.key: alerted(sandbox, t.tenant_id, week) for t in (SAKURA, AOZORA)}
    assert seen[SAKURA.key], "the sandbox's alerts of last week name devices"
    for tenant, subject in ((SAKURA, "週次検知レポート"), (AOZORA, "Weekly detection report")):
        [mail] = reports_to(box, CONTACTS[tenant.key], subject)
        name, content = attachment(mail)
        assert name.endswith(".pdf") and content.startswith(b"%PDF-")
        text = pdf_text(content)
        flat = squeezed(text)
        assert tenant.name in text
        assert all(device in flat for device in seen[tenant.key]), [
            d for d in seen[tenant.key] if d not in flat
        ]
        for other in COMPANIES:
            if other is not tenant:
                assert other.name not in text and other.domain not in flat
                assert not any(device in flat for device in own[other.key])
        if tenant is SAKURA:
            assert f"{week[0]:%Y/%m/%d}" in text and f"{week[1]:%Y/%m/%d}" in text
            assert "この期間のまとめ" in text
        else:  # the English company reads English, headings and dates alike
            assert f"{week[0]:%d %b %Y}" in text and f"{week[1]:%d %b %Y}" in text
            assert "Summary of the period" in text and "この期間のまとめ" not in text
    assert not reports_to(box, CONTACTS[MIDORI.key], "週次")  # its trial ended before

    # Every company whose trial overlapped last month: the monthly report.
    for tenant, subject in (
        (SAKURA, "月次検知レポート"),
        (MIDORI, "月次検知レポート"),
        (AOZORA, "Monthly detection report"),
    ):
        [mail] = reports_to(box, CONTACTS[tenant.key], subject)
        text = pdf_text(attachment(mail)[1])
        assert tenant.name in text
        english = tenant is AOZORA
        assert (f"{month[0]:%d %b %Y}" if english else f"{month[0]:%Y/%m/%d}") in text
        for other in COMPANIES:
            if other is not tenant:
                assert other.name not in text and other.domain not in squeezed(text)

    # The secretariat: the seat CSV for Excel, a row per company and the totals.
    [seat_mail] = [
        m
        for m in box.messages
        if m["To"] == SECRETARIAT and m.get_body() != m and list(m.iter_attachments())
    ]
    name, content = attachment(seat_mail)
    assert name.endswith(".csv") and content.startswith(b"\xef\xbb\xbf")
    [part] = list(seat_mail.iter_attachments())  # shown inline, it reads as Japanese
    assert part.get_content_charset() == "utf-8" and "企業キー" in part.get_content()
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    head, body, [total] = rows[0], rows[1:-1], rows[-1:]
    assert head[:4] == ["企業キー", "企業名", "コホート", "計画台数"]
    assert sorted(r[0] for r in body) == sorted(t.key for t in COMPANIES)
    assert {r[1] for r in body} == {t.name for t in COMPANIES}
    assert total[0] == "合計"
    for column in (3, 4):  # planned seats, onboarded devices
        assert int(total[column]) == sum(int(r[column]) for r in body) > 0
    onboarded = {r[0]: int(r[4]) for r in body}
    assert onboarded == {k: len(v) for k, v in own.items()}

    # A second run of each job sends nothing new.
    assert said(config, "run-job", "weekly-reports") == "weekly-reports: 0 reports queued"
    assert said(config, "run-job", "monthly-reports") == "monthly-reports: 0 reports queued"
    assert said(config, "run-job", "seat-report").startswith("seat-report: 0 seat reports")
    cli(config, "run-job", "outbox")
    assert len(box.messages) == received

    # The archive lists every file sent, each the very bytes its mail attached.
    listed = json.loads(cli(config, "reports", "list", "--json").stdout)
    kinds = sorted((r["company"], r["kind"]) for r in listed)
    assert kinds == sorted(
        [(SAKURA.key, "weekly"), (AOZORA.key, "weekly")]
        + [(t.key, "monthly") for t in COMPANIES]
        + [("secretariat", "seats")]
    )
    periods = {"weekly": week, "monthly": month, "seats": seat_period}
    sent = {attachment(m)[1] for m in box.messages if list(m.iter_attachments())}
    for record in listed:
        start, end = periods[record["kind"]]
        assert record["period"] == {"from": str(start), "to": str(end)}
        assert (record["mail"], record["sequence"]) == ("sent", 0)
        assert Path(record["path"]).read_bytes() in sent

    # A report re-sent on purpose goes out as the same file.
    weekly = next(r for r in listed if (r["company"], r["kind"]) == (SAKURA.key, "weekly"))
    cli(config, "reports", "resend", str(weekly["id"]), "--to", "x@example.jp")
    cli(config, "run-job", "outbox")
    [again] = [m for m in box.messages if m["To"] == "x@example.jp"]
    [first] = reports_to(box, CONTACTS[SAKURA.key], "週次検知レポート")
    assert attachment(again) == attachment(first)
    assert again["Subject"] == first["Subject"]


def test_a_resolved_ticket_brings_its_incident_report_and_the_cohort_results_name_no_one(
    tmp_path, config, sandbox, inbox
):
    box, _ = inbox
    cli(config, "poll")
    tickets = json.loads(cli(config, "tickets", "--company", SAKURA.key, "--json").stdout)
    ticket = tickets[0]["id"]
    cli(
        config, "ticket", "resolve", str(ticket),
        "--when", f"{clock.TODAY:%Y年%m月%d日} 午前",
        "--what", "不審なプログラムの実行を検知",
        "--cause", "メールの添付ファイルを開いたこと",
        "--handling", "端末を隔離し、不審なファイルを削除",
        "--effect", "ほかの端末への広がりはありません",
    )  # fmt: skip
    cli(config, "run-job", "outbox")
    [mail] = [
        m for m in box.messages if m["To"] == CONTACTS[SAKURA.key] and list(m.iter_attachments())
    ]
    name, content = attachment(mail)
    assert name.endswith(".pdf") and content.startswith(b"%PDF-")
    text = pdf_text(content)
    for part in ("不審なプログラムの実行を検知", "メールの添付ファイルを開いたこと", SAKURA.name):
        assert part in text
    [record] = json.loads(cli(config, "reports", "list", "--kind", "incident", "--json").stdout)
    assert (record["company"], record["ticket"]) == (SAKURA.key, ticket)
    assert Path(record["path"]).read_bytes() == content
    shown = said(config, "reports", "show", str(record["id"]))
    assert f"(incident, {SAKURA.key}, " in shown and f", ticket #{ticket})" in shown

    # The sample cohort's results: three companies, none of them named.
    pdf, table = tmp_path / "results.pdf", tmp_path / "results.csv"
    out = said(config, "cohorts", "results", SAMPLE_COHORT, "--pdf", str(pdf), "--csv", str(table))
    assert f"PDF written: {pdf}" in out and f"CSV written: {table}" in out
    results = pdf_text(pdf.read_bytes())
    written = table.read_bytes().decode("utf-8-sig")
    counted = [r for r in csv.reader(io.StringIO(written)) if "社数" in r[1:3]]
    assert counted and counted[0][-1] == "3", counted  # the three sample companies
    for text in (results, written):
        flat = squeezed(text)
        for tenant in COMPANIES:
            for secret in (tenant.name, tenant.key, tenant.tenant_id, tenant.domain):
                assert secret not in flat, secret
            for device in devices(sandbox, tenant.tenant_id):
                assert device not in flat and device.split(".")[0] not in flat


def test_a_company_offboarded_since_still_receives_the_month_its_trial_ended_in(
    config, database_url, inbox, now
):
    """midori-shoji's trial ended last month; once offboarded its tenant is no longer polled
    (credentials dropped), yet its detections are kept and that month's report is its last."""
    box, _ = inbox
    cli(config, "poll")
    engine = make_engine(database_url)
    try:
        with transaction(make_sessions(engine)) as session:
            company = session.scalars(select(Company).where(Company.key == MIDORI.key)).one()
            company.state = JourneyState.OFFBOARDED.value
            tenant = session.scalars(select(Tenant).where(Tenant.company_id == company.id)).one()
            tenant.credentials_dropped_at = now
    finally:
        engine.dispose()
    assert said(config, "run-job", "monthly-reports") == "monthly-reports: 3 reports queued"
    cli(config, "run-job", "outbox")
    [mail] = reports_to(box, CONTACTS[MIDORI.key], "月次検知レポート")
    assert MIDORI.name in pdf_text(attachment(mail)[1])
    assert said(config, "run-job", "weekly-reports") == "weekly-reports: 2 reports queued"


def test_a_weekly_run_by_hand_later_in_the_week_finds_monday_s_reports_sent(config, inbox, now):
    """The weekly report is of the last whole week, Monday to Sunday: the job run again on
    Wednesday (by hand, or made up after an outage) mails no company a second, shifted week."""
    box, _ = inbox
    cli(config, "poll")
    monday = clock.this_monday()
    with clock.travel(now - timedelta(days=clock.TODAY.weekday())):  # this Monday
        assert said(config, "run-job", "weekly-reports") == "weekly-reports: 2 reports queued"
    for day in range(1, 7):
        with clock.travel(now + timedelta(days=day - clock.TODAY.weekday())):
            assert said(config, "run-job", "weekly-reports") == "weekly-reports: 0 reports queued"
    listed = json.loads(cli(config, "reports", "list", "--kind", "weekly", "--json").stdout)
    last_week = {"from": str(monday - timedelta(days=7)), "to": str(monday - timedelta(days=1))}
    assert [r["period"] for r in listed] == [last_week, last_week]
    cli(config, "run-job", "outbox")
    assert len([m for m in box.messages if "detection report" in m["Subject"].lower()
                or "週次検知レポート" in m["Subject"]]) == 2  # fmt: skip
