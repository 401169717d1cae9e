"""The reports archive in the console: every report sent, its file as it was attached, a
re-send as the person (through the outbox), and the CSV downloads (UTF-8 with BOM) that are
the CLI's own files, each limited to what the person may see."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from edrtrial.models import AuditEvent, OutboxMessage, ReportArchive

import clock
from web_programme_data import OTHER_KEY, OTHER_NAME, add_other_cohort
from web_support import Console, start_console

WEEK = (clock.TODAY - timedelta(days=10), clock.TODAY - timedelta(days=4))


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        add_other_cohort(running)
        yield running


def cli(console: Console, *args: str) -> str:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(console.config.path), *args])
    assert result.exit_code == 0, result.output
    return result.output


def mail_report(console: Console, company: str) -> ReportArchive:
    """The company's weekly report, mailed (and archived) as `edrtrial report` does it."""
    first, last = WEEK
    cli(console, "report", "--company", company, "--from", str(first), "--to", str(last))
    with console.runtime.sessions() as session:
        found = session.scalars(
            select(ReportArchive).order_by(ReportArchive.id.desc()).limit(1)
        ).one()
        session.expunge(found)
        return found


def test_the_archive_lists_a_report_and_gives_back_its_file(console: Console) -> None:
    record = mail_report(console, "sakura-seisakusho")
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    page = web.get("/reports").text
    row = page.split(f'data-report="{record.id}"')[1].split("</tr>")[0]
    assert "sakura-seisakusho" in row and record.recipients[0] in row
    assert WEEK[0].isoformat() in row and "週次" in row
    got = web.get(f"/reports/{record.id}/file")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/pdf"
    assert got.content == Path(record.path).read_bytes()
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == record.filename
    assert web.get("/reports/99999/file").status_code == 404
    filtered = web.get("/reports?kind=incident").text
    assert f'data-report="{record.id}"' not in filtered
    later = (WEEK[1] + timedelta(days=1)).isoformat()
    assert f'data-report="{record.id}"' not in web.get(f"/reports?from={later}").text
    assert f'data-report="{record.id}"' in web.get(f"/reports?to={WEEK[0]}").text


def test_a_resend_goes_through_the_outbox_as_the_person(console: Console) -> None:
    record = mail_report(console, "sakura-seisakusho")
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    answer = web.post(f"/reports/{record.id}/resend", {"to": "kanri@sakura.example.jp"})
    assert answer.status_code == 303 and answer.headers["location"] == "/reports"
    page = web.get("/reports").text
    assert 'class="flash ok"' in page and "再送" in page
    with console.runtime.sessions() as session:
        again = session.scalars(select(ReportArchive).where(ReportArchive.sequence == 1)).one()
        assert again.actor == "web:suzuki" and again.recipients == ["kanri@sakura.example.jp"]
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.report_id == again.id)
        ).one()
        assert message.status == "sent" and message.recipient == "kanri@sakura.example.jp"
        actors = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action.like("%report%"))
        ).all()
        assert "web:suzuki" in actors
    assert Path(again.path).read_bytes() == Path(record.path).read_bytes()


def test_a_viewer_cannot_resend(console: Console) -> None:
    record = mail_report(console, "sakura-seisakusho")
    password = console.add_user("mori", ["viewer"])
    web = console.signed_in("mori", password)
    assert "/resend" not in web.get("/reports").text
    assert web.post(f"/reports/{record.id}/resend", {}).status_code == 403


def test_another_cohort_s_report_is_not_found(console: Console) -> None:
    other = mail_report(console, OTHER_KEY)
    own = mail_report(console, "sakura-seisakusho")
    password = console.add_user("kato", ["secretariat"], cohorts=["sample-1"])
    web = console.signed_in("kato", password)
    page = web.get("/reports").text
    assert f'data-report="{own.id}"' in page and f'data-report="{other.id}"' not in page
    assert OTHER_KEY not in page
    assert web.get(f"/reports/{other.id}/file").status_code == 404
    assert web.post(f"/reports/{other.id}/resend", {}).status_code == 404
    assert web.get(f"/reports?company={OTHER_KEY}").status_code == 404


def rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM"
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("/reports/seats.csv", ("seats",)),
        ("/reports/trial-calendar.csv", ("trial", "calendar")),
        ("/cohorts/sample-1/results.csv", ("cohorts", "results", "sample-1")),
    ],
)
def test_each_csv_download_is_the_cli_s_file(
    console: Console, tmp_path: Path, path: str, command: tuple[str, ...]
) -> None:
    written = tmp_path / "cli.csv"
    cli(console, *command, "--csv", str(written))
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    got = web.get(path)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "attachment;" in got.headers["content-disposition"]
    assert rows(got.content) == rows(written.read_bytes())
    assert got.content == written.read_bytes()


def test_the_csv_downloads_hold_only_the_person_s_cohort(console: Console) -> None:
    password = console.add_user("kato", ["secretariat"], cohorts=["sample-1"])
    web = console.signed_in("kato", password)
    for path in ("/reports/seats.csv", "/reports/trial-calendar.csv"):
        got = web.get(path)
        text = got.content.decode("utf-8-sig")
        assert "sakura-seisakusho" in text and OTHER_NAME not in text and OTHER_KEY not in text
    assert web.get("/cohorts/other-2/results.csv").status_code == 404
    assert web.get("/reports/seats.csv?cohort=other-2").status_code == 404
    assert web.get("/cohorts/sample-1/results.csv").status_code == 200


def test_a_purged_company_s_report_names_only_its_code_and_links_nowhere(console: Console) -> None:
    from edrtrial.db import transaction
    from edrtrial.models import Company
    from edrtrial.programme.purge import purge_company

    record = mail_report(console, "sakura-seisakusho")
    with transaction(console.runtime.sessions) as session:
        company = session.scalars(select(Company).where(Company.key == "sakura-seisakusho")).one()
        company.state = "offboarded"  # its retention ended: the lifecycle purges it
        programme = console.runtime.config.settings.programme
        code = purge_company(session, programme, company, actor="test", at=clock.NOW).anon_code
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    page = web.get("/reports").text
    row = page.split(f'data-report="{record.id}"')[1].split("</tr>")[0]
    assert code in row and "sakura" not in row and "さくら" not in row
    assert "/companies/" not in row and "/file" not in row  # no page and no file are left
    assert web.get(f"/reports/{record.id}/file").status_code == 404
