"""`report` writes the PDF it mails, and `reports list|show|resend` answer what a company was
sent and send it again on purpose; against the sample sandbox, as an operator runs them."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from rich.cells import cell_len
from sqlalchemy import select
from test_cli_terminal import cli, config, sandbox
from test_report_delivery import pdf_text

from edrtrial.db import make_engine, make_sessions
from edrtrial.models import AuditEvent, Company, OutboxMessage, Tenant
from edrtrial.timeutil import to_jst

import clock

__all__ = ["config", "sandbox"]  # fixtures shared with test_cli_terminal

SAKURA_NAME = "さくら製作所"


def period(first: int = -9, last: int = -3) -> tuple[str, ...]:
    """A past week, relative to the test's today."""
    return (
        "--company",
        "sakura-seisakusho",
        "--from",
        str(clock.day(first)),
        "--to",
        str(clock.day(last)),
    )


def report_mails(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert isinstance(mail, EmailMessage)
        if "detection-report" in path.name:
            found.append(mail)
    return found


def test_report_output_pdf_is_a_pdf_and_html_is_html(config, tmp_path):
    out = cli(config, "report", *period(), "--no-mail", "--output", str(tmp_path / "r.pdf"))
    assert f"report written to {tmp_path / 'r.pdf'}" in out.stdout
    content = (tmp_path / "r.pdf").read_bytes()
    assert content.startswith(b"%PDF-")
    text = pdf_text(content)
    assert SAKURA_NAME in text and f"{clock.day(-9):%Y/%m/%d}" in text
    cli(config, "report", *period(), "--no-mail", "--output", str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and SAKURA_NAME in html
    refused = cli(config, "report", *period(), "--output", str(tmp_path / "r.txt"), code=2)
    assert refused.output == f"error: --output '{tmp_path / 'r.txt'}': give a .pdf or .html file\n"


def test_report_without_output_names_the_archived_pdf_it_mailed(config, tmp_path):
    mailed = cli(config, "report", *period()).stdout
    [line] = [row for row in mailed.splitlines() if row.startswith("report archived at ")]
    archived = Path(line.removeprefix("report archived at "))
    assert archived.is_file() and archived.is_relative_to(tmp_path / "var" / "reports")
    [mail] = report_mails(tmp_path / "mail")
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == archived.read_bytes()
    assert attachment.get_filename().endswith(
        f"_sakura-seisakusho_{clock.day(-9)}_{clock.day(-3)}.pdf"
    )
    # --no-mail writes beside the archive, under the company and period.
    written = cli(config, "report", *period(), "--no-mail").stdout
    target = tmp_path / "var" / "reports" / f"sakura-seisakusho_{clock.day(-9)}_{clock.day(-3)}.pdf"
    assert f"report written to {target}" in written and target.read_bytes().startswith(b"%PDF-")


def test_a_period_that_has_not_ended_is_refused_in_one_line(config):
    today = clock.day(0)
    refused = cli(config, "report", *period(-2, 1), code=2)
    assert refused.output == (
        f"error: the period {clock.day(-2)} to {clock.day(1)} has not ended: a report covers "
        f"days up to today ({today} JST)\n"
    )
    cli(config, "report", *period(-2, 0), "--no-mail")  # today is fine


def test_reports_list_show_and_resend(config, tmp_path, database_url):
    cli(config, "report", *period())
    cli(config, "report", *period(-40, -34), "--monthly")
    listed = json.loads(cli(config, "reports", "list", "--json").stdout)
    assert [(r["company"], r["kind"], r["sequence"], r["mail"]) for r in listed] == [
        ("sakura-seisakusho", "weekly", 0, "sent"),
        ("sakura-seisakusho", "monthly", 0, "sent"),
    ]
    first = listed[0]
    assert first["recipients"] == ["it@sakura.example.jp"]
    assert first["period"] == {"from": str(clock.day(-9)), "to": str(clock.day(-3))}
    assert (
        json.loads(cli(config, "reports", "list", "--kind", "monthly", "--json").stdout)[0]["kind"]
        == "monthly"
    )
    assert (
        json.loads(cli(config, "reports", "list", "--company", "aozora-design", "--json").stdout)
        == []
    )

    for columns in (80, 100):
        table = cli(config, "reports", "list", columns=columns).stdout
        print(table)
        assert all(cell_len(line) <= columns for line in table.splitlines())
        assert "sakura-seisakusho" in table and "weekly" in table and "monthly" in table
        if columns == 100:  # to whom, whole: the file is for `reports show` and --wide
            assert "it@sakura.example.jp" in table
    wide = cli(config, "reports", "list", "--wide", columns=80).stdout
    assert first["path"] in wide and "it@sakura.example.jp" in wide
    shown = cli(config, "reports", "show", str(first["id"])).stdout
    assert f"file: {first['path']}\n" in shown and "to: it@sakura.example.jp" in shown

    said = cli(
        config,
        "reports",
        "resend",
        str(first["id"]),
        "--to",
        "boss@sakura.example.jp",
        "--by",
        "sato",
    ).stdout
    assert "queued again as report" in said and "to boss@sakura.example.jp" in said
    mails = report_mails(tmp_path / "mail")
    assert [m["To"] for m in mails] == [
        "it@sakura.example.jp",
        "it@sakura.example.jp",
        "boss@sakura.example.jp",
    ]
    [original] = list(mails[0].iter_attachments())
    [again] = list(mails[2].iter_attachments())
    assert again.get_content() == original.get_content()  # the archived file, not a new render
    after = json.loads(cli(config, "reports", "list", "--json").stdout)
    assert [(r["kind"], r["sequence"]) for r in after] == [
        ("weekly", 0),
        ("monthly", 0),
        ("weekly", 1),
    ]
    with make_sessions(make_engine(database_url))() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued").order_by(AuditEvent.id)
        ).all()
    assert events[-1].on_behalf_of == "sato" and events[-1].detail["resend"] == 1
    assert events[-1].actor.startswith("cli:")

    mistyped = cli(config, "reports", "list", "--kind", "seat", code=2)
    assert mistyped.output == (
        "error: no kind 'seat' of report (kinds: incident, monthly, period, seats, weekly)\n"
    )
    assert cli(config, "reports", "list", "--kind", "seats").stdout.endswith(
        "no report archived yet\n"
    )
    missing = cli(config, "reports", "show", "999", code=2)
    assert missing.output == "error: there is no archived report 999\n"
    bad = cli(config, "reports", "resend", str(first["id"]), "--to", "not an address", code=2)
    assert bad.output == "error: 'not an address' is not a mail address\n"


def test_a_resend_of_a_report_whose_file_changed_is_refused_naming_the_file(config):
    cli(config, "report", *period())
    [record] = json.loads(cli(config, "reports", "list", "--json").stdout)
    Path(record["path"]).write_bytes(b"%PDF-1.7 not what was sent")
    refused = cli(config, "reports", "resend", str(record["id"]), code=2)
    assert refused.output.count("\n") == 1
    assert record["path"] in refused.output and "not the file that was sent" in refused.output


def test_run_job_monthly_reports_says_what_it_queued_and_queues_it_once(config):
    first = cli(config, "run-job", "monthly-reports").stdout
    assert re.fullmatch(r"monthly-reports: \d+ reports? queued\n", first), first
    again = cli(config, "run-job", "monthly-reports").stdout
    assert again == "monthly-reports: 0 reports queued\n"
    listed = json.loads(cli(config, "reports", "list", "--kind", "monthly", "--json").stdout)
    assert len(listed) == int(first.split()[1])
    start, end = clock.day(0).replace(day=1) - timedelta(days=1), None
    for record in listed:
        assert record["period"] == {"from": str(start.replace(day=1)), "to": str(start)}
    del end


def test_a_period_neither_a_week_nor_a_month_is_reported_as_that_period(config, tmp_path):
    """30 days asked for by hand: no "weekly" title, no "previous week"; archived as a period
    report, and listed under that kind."""
    first, last = clock.day(-31), clock.day(-2)
    said = cli(
        config, "report", "--company", "sakura-seisakusho", "--from", str(first), "--to", str(last)
    ).output
    [mail] = report_mails(tmp_path / "mail")
    assert mail["Subject"].startswith("【EDR体験】検知レポート（")
    text = mail.get_body(("plain",)).get_content()
    assert "EDR体験 検知レポート" in text
    assert "週次" not in text and "前週" not in text
    [attachment] = list(mail.iter_attachments())
    printed = pdf_text(attachment.get_content())
    assert "EDR体験 検知レポート" in printed and "週次" not in printed and "前週" not in printed
    [record] = json.loads(cli(config, "reports", "list", "--kind", "period", "--json").stdout)
    assert Path(record["path"]).name == f"period_{first}_{last}.pdf"
    assert f"report archived at {record['path']}" in said
    # Seven days are a week, a calendar month is a month, without being told.
    cli(config, "report", *period(-9, -3))
    month_end = clock.day(0).replace(day=1) - timedelta(days=1)
    month = ("--from", str(month_end.replace(day=1)), "--to", str(month_end))
    cli(config, "report", "--company", "sakura-seisakusho", *month)
    listed = json.loads(cli(config, "reports", "list", "--json").stdout)
    assert [r["kind"] for r in listed] == ["period", "weekly", "monthly"]


@pytest.mark.parametrize("json_lines", [False, True])
def test_report_prints_its_own_lines_and_no_pdf_library_chatter(config, json_lines):
    if json_lines:
        text = config.read_text(encoding="utf-8")
        assert "json_lines = false" in text
        config.write_text(text.replace("json_lines = false", "json_lines = true"), "utf-8")
    out = cli(config, "report", *period(), "--no-mail").output
    assert "report written to" in out, "the command says what it wrote"
    noisy = [line for line in out.splitlines() if "weasyprint" in line.lower()]
    assert not noisy, noisy
    assert "fontTools" not in out and "Step 6 - Creating PDF" not in out


def test_a_report_mailed_before_the_archive_is_the_period_s_first_send(
    config, tmp_path, database_url
):
    """A store upgraded from before the archive holds the weekly mail under its old outbox
    key: `report` says when it went and mails it again only with --resend."""
    first, last = clock.day(-9), clock.day(-3)
    sent_at = clock.NOW - timedelta(days=2)
    with make_sessions(make_engine(database_url))() as session:
        tenant_id = session.scalars(
            select(Tenant.id).join(Company).where(Company.key == "sakura-seisakusho")
        ).one()
        session.add(  # as the report mail was queued then: its key, no archived report
            OutboxMessage(
                dedupe_key=f"report:detection:sakura-seisakusho:{first}:{last}",
                tenant_id=tenant_id,
                kind="detection_report",
                recipient="it@sakura.example.jp",
                subject="【EDR体験】週次検知レポート",
                body_text="検知レポート",
                body_html="<p>検知レポート</p>",
                status="sent",
                created_at=sent_at,
                next_attempt_at=sent_at,
                sent_at=sent_at,
            )
        )
        session.commit()
    said = cli(config, "report", *period()).stdout
    assert (
        f"sakura-seisakusho {first} to {last}: mailed {to_jst(sent_at):%Y-%m-%d %H:%M} JST "
        "to it@sakura.example.jp" in said
    )
    assert "not mailed again (--resend mails it again)" in said
    assert report_mails(tmp_path / "mail") == []
    assert json.loads(cli(config, "reports", "list", "--json").stdout) == []
    again = cli(config, "report", *period(), "--resend").stdout
    assert "report archived at" in again
    assert [m["To"] for m in report_mails(tmp_path / "mail")] == ["it@sakura.example.jp"]
    with make_sessions(make_engine(database_url))() as session:
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued").order_by(AuditEvent.id)
        ).all()
    assert audited[-1].detail["resend"] == 1
