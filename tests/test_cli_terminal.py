"""The CLI on an operator's terminal, 80 and 100 columns wide, against the sample sandbox.

Every list keeps one line per row within the terminal (cells cut with an ellipsis), shows
every cell with `--wide` and gives every value whole with `--json`; a mistyped company key
is an error, never an empty list; a job run by hand says what it did in words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.cells import cell_len
from sqlalchemy import select

from edrtrial.db import make_engine, make_sessions
from edrtrial.ingest import health
from edrtrial.models import AuditEvent, OutboxMessage, Tenant, Ticket
from edrtrial.playbooks.engine import default_playbook_paths
from edrtrial.sandbox import SandboxServer

import clock
from sandbox_config import sample_companies, sample_world, serving, settings, write_config

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
MIDORI = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c02"
WIDTHS = (80, 100)


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its data made at the test's now (the sample trials are dated around it)."""
    with serving(sample_world(actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def make_config(tmp_path: Path, sandbox: SandboxServer, database_url: str, **caps: int) -> Path:
    """The sample programme's config; `caps` sets companies' seat caps by key."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    blocks = sample_companies(data)
    for company in blocks:
        company["seat_cap"] = caps.get(company["key"].replace("-", "_"), company["seat_cap"])
    return write_config(tmp_path / "config.toml", data, companies=blocks)


@pytest.fixture
def config(tmp_path: Path, sandbox: SandboxServer, database_url: str) -> Path:
    """A polled sample programme: tickets, devices, and midori's offboarding planned."""
    path = make_config(tmp_path, sandbox, database_url)
    cli(path, "db", "upgrade")
    cli(path, "poll")
    cli(path, "offboarding", "--plan")
    return path


def cli(config: Path, *args: str, code: int = 0, columns: int | None = None) -> Result:
    env = {"COLUMNS": str(columns)} if columns else {"COLUMNS": ""}
    result = CliRunner().invoke(
        main_command(), ["--config", str(config), *args], env=env, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result


def main_command():  # imported late: the CLI reads nothing at import that a test sets
    from edrtrial.cli.main import main

    return main


def stdout_lines(result: Result) -> list[str]:
    """The command's own output (its log lines go to stderr)."""
    return [line for line in result.stdout.splitlines() if " INFO " not in line]


LISTS = (
    ("tickets",),
    ("tickets", "--all"),
    ("seats",),
    ("tenants",),
    ("offboarding",),
    ("quarantine",),
    ("action", "list"),
    ("poll", "--no-deliver"),
    ("trial", "calendar"),
)


@pytest.mark.parametrize("columns", WIDTHS)
def test_every_list_keeps_a_row_a_line_within_the_terminal(config, columns):
    tickets = json.loads(cli(config, "tickets", "--json").stdout)
    assert tickets, "the sample poll opens tickets"
    for command in LISTS:
        lines = stdout_lines(cli(config, *command, columns=columns))
        too_wide = [line for line in lines if cell_len(line) > columns]
        assert not too_wide, (command, too_wide)
    listed = stdout_lines(cli(config, "tickets", columns=columns))
    rows = [line for line in listed[1:-2] if line.split(" ", 1)[0].isdigit()]
    assert [int(row.split()[0]) for row in rows] == [t["id"] for t in tickets]
    assert listed[-2] == f"{len(tickets)} ticket(s); times in JST"
    assert listed[-1].startswith("al.: alerts; who: assignee; ack by:")  # the short headers
    longest = max(tickets, key=lambda t: len(t["title"]))
    assert longest["title"] not in "\n".join(listed)  # cut to fit ...
    assert "…" in "\n".join(listed)  # ... and marked as cut


def test_a_list_is_100_columns_at_most_however_wide_the_terminal_and_whole_when_wide(config):
    tickets = json.loads(cli(config, "tickets", "--json").stdout)
    longest = max(tickets, key=lambda t: len(t["title"]))["title"]
    listed = stdout_lines(cli(config, "tickets", columns=250))
    assert max(cell_len(line) for line in listed) <= 100
    wide = stdout_lines(cli(config, "tickets", "--wide", columns=80))
    assert any(longest in line and len(line) > 100 for line in wide)
    assert len([line for line in wide[1:-2] if line.split(" ", 1)[0].isdigit()]) == len(tickets)


def test_json_lists_give_every_value_whole_with_iso_times(config, database_url, now):
    tickets = json.loads(cli(config, "tickets", "--json", columns=80).stdout)
    with make_sessions(make_engine(database_url))() as session:
        stored = {t.id: t for t in session.scalars(select(Ticket))}
    for record in tickets:
        assert record["title"] == stored[record["id"]].title
        assert datetime.fromisoformat(record["opened_at"]).utcoffset() is not None
    seats_out = cli(config, "seats", "--json")
    assert seats_out.stdout.isascii()  # every character the EDR or a user sent is escaped
    seats = {s["company"]: s for s in json.loads(seats_out.stdout)}
    assert seats["sakura-seisakusho"]["name"] == "株式会社さくら製作所"
    assert seats["sakura-seisakusho"]["days_left"] == 30
    for command in LISTS[2:7]:
        assert isinstance(json.loads(cli(config, *command, "--json").stdout), list), command


def test_tickets_filter_by_state_priority_assignee_and_mine(config):
    tickets = json.loads(cli(config, "tickets", "--json").stdout)
    p1 = [t["id"] for t in tickets if t["priority"] == "P1"]
    only = json.loads(cli(config, "tickets", "--priority", "p1", "--json").stdout)
    assert [t["id"] for t in only] == p1
    mine, theirs = tickets[0]["id"], tickets[1]["id"]
    cli(config, "ticket", "ack", str(mine))
    cli(config, "ticket", "assign", str(theirs), "Tanaka")
    acked = json.loads(cli(config, "tickets", "--state", "acknowledged", "--json").stdout)
    assert [t["id"] for t in acked] == [mine]
    assert [t["id"] for t in json.loads(cli(config, "tickets", "--mine", "--json").stdout)] == [
        mine
    ]
    who = json.loads(cli(config, "tickets", "--assignee", "tanaka", "--json").stdout)
    assert [t["id"] for t in who] == [theirs]


@pytest.mark.parametrize(
    "command",
    [
        ("tickets", "--company", "{}"),
        ("offboarding", "--company", "{}"),
        ("quarantine", "--company", "{}"),
        ("poll", "--company", "{}"),
        ("tenants", "resume", "{}"),
        ("report", "--company", "{}", "--from", "2026-11-16", "--to", "2026-11-22"),
    ],
)
def test_an_unknown_or_miscased_company_key_is_a_one_line_error(config, command):
    unknown = cli(config, *(a.format("nosuch") for a in command), code=2)
    assert unknown.output.count("\n") == 1
    assert "no company 'nosuch'" in unknown.output
    assert "sakura-seisakusho" in unknown.output  # the keys there are
    cased = cli(config, *(a.format("Sakura-Seisakusho") for a in command), code=2)
    assert cased.output == (
        "error: no company 'Sakura-Seisakusho': company keys are lower case; "
        "did you mean 'sakura-seisakusho'?\n"
    )


def test_run_job_says_in_words_what_the_job_did(config, sandbox):
    sandbox.world.add_alerts(SAKURA, "hands_on_keyboard", 1, severity="high")
    polled = cli(config, "run-job", "poll").stdout
    assert "Outcome(" not in polled and "[" not in polled
    line = [row for row in polled.splitlines() if row.startswith("poll:")]
    assert line and line[0].startswith("poll: 3 tenants, 1 new alert, 1 ticket opened")
    assert cli(config, "run-job", "outbox").stdout.startswith("outbox: ")
    assert "Stats(" not in cli(config, "run-job", "outbox").stdout
    assert cli(config, "run-job", "desk").stdout == "desk: nothing to do\n"
    # midori's tasks were planned by `offboarding --plan`; the daily job sends them.
    lifecycle = cli(config, "run-job", "trial-lifecycle").stdout
    assert re.fullmatch(
        r"trial-lifecycle: 0 offboarding tasks planned, \d+ offboarding tasks sent\n", lifecycle
    )
    assert cli(config, "run-job", "trial-lifecycle").stdout == (
        "trial-lifecycle: 0 offboarding tasks planned\n"
    )
    sent = int(re.findall(r"(\d+) offboarding tasks sent", lifecycle)[0])
    offboards = [c.get("Offboard", 0) for c in sandbox.world.action_counts(MIDORI).values()]
    assert max(offboards) == 1 and sum(offboards) == sent  # over HTTPS, each device once


def test_by_is_taken_after_the_sub_command_as_before_it(config, database_url):
    tickets = json.loads(cli(config, "tickets", "--json").stdout)
    first, second = str(tickets[0]["id"]), str(tickets[1]["id"])
    cli(config, "ticket", "ack", first, "--by", "sato")
    cli(config, "ticket", "--by", "sato", "note", second, "called them")
    with make_sessions(make_engine(database_url))() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.target.in_([f"ticket:{first}", f"ticket:{second}"]))
        ).all()
    assert {e.on_behalf_of for e in events if e.actor.startswith("cli:")} == {"sato"}
    assert json.loads(cli(config, "tickets", "--assignee", "sato", "--json").stdout)[0]["id"] == (
        int(first)
    )
    both = cli(config, "ticket", "--by", "sato", "ack", second, "--by", "tanaka", code=2)
    assert "--by names both 'sato' and 'tanaka'" in both.output


def test_playbooks_check_names_files_as_the_config_and_the_command_line_name_them(
    tmp_path, sandbox, database_url, monkeypatch
):
    shipped = default_playbook_paths()[0]
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ours.toml").write_text(shipped.read_text(encoding="utf-8"))
    data = settings(database_url, base_url=sandbox.base_url, state_dir=sandbox.state_dir)
    data["playbooks"] = ["playbooks/ours.toml"]
    config = write_config(tmp_path / "config.toml", data)
    out = cli(config, "playbooks", "check").stdout
    assert out.startswith("playbooks/ours.toml: ")
    assert str(tmp_path) not in out
    (tmp_path / "playbooks" / "twin.toml").write_text(shipped.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # files on the command line are the operator's, from here
    twice = cli(
        config,
        "playbooks",
        "check",
        "playbooks/../playbooks/twin.toml",
        "./playbooks/ours.toml",
        code=2,
    ).output
    assert "playbooks/../playbooks/twin.toml" in twice and "./playbooks/ours.toml" in twice
    assert "not found" not in twice and str(tmp_path) not in twice
    (tmp_path / "playbooks" / "ours.toml").write_text("[[rule]]\nname = 1\n")
    broken = cli(config, "playbooks", "check", code=2).output
    assert "playbooks/ours.toml" in broken and str(tmp_path) not in broken


def test_offboarding_execute_says_what_was_sent_and_what_became_manual_per_device(config, sandbox):
    sandbox.world.add_devices(MIDORI, 1, platform="macOS", detection_test_alert=False)
    cli(config, "run-job", "inventory")
    cli(config, "offboarding", "--plan")
    planned = json.loads(cli(config, "offboarding", "--company", "midori-shoji", "--json").stdout)
    [mac] = [t["device"] for t in planned if t["platform"] == "macOS"]
    out = cli(config, "offboarding", "--company", "midori-shoji", "--execute", "--yes").stdout
    for task in planned:
        if task["device"] != mac:
            assert f"  {task['device']}: sent\n" in out
    assert (
        f"  {mac}: needs a manual uninstall: The EDR cannot uninstall itself remotely from "
        f"macOS devices: run the offboarding script from the Defender portal"
    ) in out
    assert f"{len(planned) - 1} sent, 1 manual uninstall(s), 0 not settled" in out


def test_report_says_a_period_was_mailed_and_mails_it_again_only_with_resend(
    config, tmp_path, database_url
):
    period = ("--company", "sakura-seisakusho", "--from", "2026-11-16", "--to", "2026-11-22")
    cli(config, "report", *period)
    again = cli(config, "report", *period).stdout
    assert "2026-11-16 to 2026-11-22: mailed 2026-11-25 " in again
    assert "JST to it@sakura.example.jp" in again
    assert "not mailed again (--resend mails it again)" in again
    cli(config, "report", *period, "--resend")
    with make_sessions(make_engine(database_url))() as session:
        sent = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "detection_report")
        ).all()
        audited = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued")
        ).all()
    assert [m.status for m in sent] == ["sent", "sent"]
    assert len(audited) == 2 and audited[1].detail["resend"] == 1
    assert audited[1].actor.startswith("cli:")


@pytest.mark.parametrize("columns", WIDTHS)
def test_tenants_prints_the_admin_consent_link_whole(config, database_url, now, columns):
    link = (
        f"https://login.microsoftonline.com/{SAKURA}/adminconsent"
        "?client_id=0d6f6f5e-2b7d-4c1e-9a55-6f1f3a1b2c3d"
    )
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.external_id == SAKURA))
    assert tenant_id is not None
    reason = f"App unknown in tenant {SAKURA}: a global administrator must grant consent at {link}"
    health.park(sessions, tenant_id, reason, now)
    lines = stdout_lines(cli(config, "tenants", columns=columns))
    assert link in lines  # on its own line, whole
    assert all(cell_len(line) <= columns for line in lines if line != link)
    listed = json.loads(cli(config, "tenants", "--json").stdout)
    assert next(t for t in listed if t["tenant"] == SAKURA)["links"] == [link]


@pytest.mark.parametrize("columns", WIDTHS)
def test_tenants_print_a_parked_tenant_s_reason_whole_under_the_list(
    config, database_url, now, columns
):
    """The list cuts the reason to fit; why a tenant is parked is what the operator came for."""
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.external_id == SAKURA))
    assert tenant_id is not None
    reason = (
        "defender tenant client_secret: cannot read secret file /etc/edrtrial/secrets/"
        "sakura.secret: No such file or directory; restore it, then `edrtrial tenants resume "
        "sakura-seisakusho`"
    )
    health.park(sessions, tenant_id, reason, now)
    lines = stdout_lines(cli(config, "tenants", columns=columns))
    assert all(cell_len(line) <= columns for line in lines)
    assert reason in " ".join(line.strip() for line in lines)


def test_seats_count_offboarded_devices_apart_and_warn_near_and_over_the_cap(
    tmp_path, sandbox, database_url
):
    config = make_config(tmp_path, sandbox, database_url, sakura_seisakusho=13, aozora_design=4)
    cli(config, "db", "upgrade")
    cli(config, "poll")
    cli(config, "offboarding", "--plan")
    cli(config, "offboarding", "--company", "midori-shoji", "--execute", "--yes")
    cli(config, "run-job", "inventory")
    seats = {s["company"]: s for s in json.loads(cli(config, "seats", "--json").stdout)}
    midori = seats["midori-shoji"]
    assert (midori["onboarded"], midori["offboarded"]) == (0, 8)
    assert seats["sakura-seisakusho"]["near_cap"] and not seats["sakura-seisakusho"]["over_cap"]
    assert seats["aozora-design"]["over_cap"]
    out = stdout_lines(cli(config, "seats", columns=80))
    assert "warning: sakura-seisakusho is near its cap: 12 of 13 seats (92%)" in out
    assert "warning: aozora-design is over its cap: 5 of 4 seats (125%)" in out
    assert all(cell_len(line) <= 80 for line in out)


def test_report_says_a_mail_given_up_was_never_received_and_resend_mails_it(config, database_url):
    period = ("--company", "sakura-seisakusho", "--from", "2026-11-16", "--to", "2026-11-22")
    cli(config, "report", *period)
    with make_sessions(make_engine(database_url))() as session, session.begin():
        [mail] = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "detection_report")
        ).all()
        mail.status, mail.sent_at, mail.last_error = "failed", None, "550 mailbox unavailable"
    again = cli(config, "report", *period).stdout
    assert "not sent yet" not in again  # it never will be: the relay refused it
    assert "given up" in again and "never received" in again
    assert "not mailed again (--resend mails it again)" in again
    cli(config, "report", *period, "--resend")
    with make_sessions(make_engine(database_url))() as session:
        sent = session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.kind == "detection_report")
        ).all()
    assert sent == ["failed", "sent"]


def test_offboarding_json_is_json_alone_when_it_also_plans_or_sends(config):
    planned = cli(config, "offboarding", "--plan", "--json")
    assert json.loads(planned.stdout), planned.stdout  # the tasks, nothing beside them
    assert "new task(s) planned" in planned.stderr
    sent = cli(config, "offboarding", "--company", "midori-shoji", "--execute", "--yes", "--json")
    tasks = json.loads(sent.stdout)
    assert tasks and {t["status"] for t in tasks} != {"planned"}
    assert f"  {tasks[0]['device']}: " in sent.stderr  # what was sent, said beside


def test_every_audited_command_takes_by_before_or_after_it_like_ticket(
    config, sandbox, database_url, now
):
    period = ("--company", "sakura-seisakusho", "--from", "2026-11-16", "--to", "2026-11-22")
    cli(config, "report", *period)
    cli(config, "report", *period, "--resend", "--by", "sato")
    cli(config, "offboarding", "--by", "suzuki", "--company", "midori-shoji", "--execute", "--yes")
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.external_id == SAKURA))
    assert tenant_id is not None
    health.park(sessions, tenant_id, "consent withdrawn", now)
    cli(config, "tenants", "resume", "sakura-seisakusho", "--by", "tanaka")
    health.park(sessions, tenant_id, "consent withdrawn again", now)
    cli(config, "tenants", "--by", "yamada", "resume", "sakura-seisakusho")
    with sessions() as session:
        by_person = [
            (e.action, e.on_behalf_of)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.actor.startswith("cli:")
        ]
    assert ("report.queued", "") in by_person  # the first mailing, for nobody
    assert ("report.queued", "sato") in by_person
    offboarded = {behalf for action, behalf in by_person if action.startswith("offboard")}
    assert offboarded == {"suzuki"}
    resumed = [behalf for action, behalf in by_person if action == "tenant.resumed"]
    assert resumed == ["tanaka", "yamada"]
    both = cli(
        config, "tenants", "--by", "sato", "resume", "sakura-seisakusho", "--by", "ito", code=2
    )
    assert "--by names both 'sato' and 'ito'" in both.output


def ticket_rows(lines: list[str]) -> dict[int, str]:
    """The list's rows by ticket number."""
    return {
        int(line.split()[0]): line
        for line in lines[1:]
        if line.split(" ", 1)[0].isdigit() and "ticket(s)" not in line
    }


@pytest.mark.parametrize("columns", WIDTHS)
def test_tickets_show_the_deadline_whole_and_titles_as_wide_as_the_rest_allows(
    config, now, columns
):
    tickets = json.loads(cli(config, "tickets", "--json").stdout)
    listed = stdout_lines(cli(config, "tickets", columns=columns))
    assert "…" not in listed[0]  # no header cut
    rows = ticket_rows(listed)
    for t in tickets:
        shown = rows[t["id"]]
        assert t["title"][:14] in shown  # a title says what happened, not "Multi-s…"
        due = datetime.fromisoformat(t["acknowledge_by"]).astimezone(clock.JST)
        if due.date() == clock.TODAY:  # today: its time and the time left
            assert re.search(rf" {due:%H:%M} \+[0-9]+:[0-5][0-9]$", shown), shown
        else:
            assert shown.rstrip().endswith(f"{due:%m/%d %H:%M}")
    assert listed[-1] == "al.: alerts; who: assignee; ack by: +H:MM left, -H:MM or ! overdue"
    p1 = next(t for t in tickets if t["priority"] == "P1")
    due = datetime.fromisoformat(p1["acknowledge_by"])
    with clock.travel(due + timedelta(minutes=15, seconds=30)):
        late = ticket_rows(stdout_lines(cli(config, "tickets", columns=columns)))
    assert late[p1["id"]].rstrip().endswith(f"{due.astimezone(clock.JST):%H:%M} -0:15")
    with clock.travel(due + timedelta(days=2)):
        later = ticket_rows(stdout_lines(cli(config, "tickets", columns=columns)))
    assert later[p1["id"]].rstrip().endswith(f"!{due.astimezone(clock.JST):%m/%d %H:%M}")


@pytest.mark.parametrize("columns", WIDTHS)
def test_seats_show_the_trial_s_end_whole_and_no_header_cut(config, columns):
    listed = stdout_lines(cli(config, "seats", columns=columns))
    assert "…" not in listed[0]
    assert listed[0].split() == [
        "company", "name", "plan", "onb.", "offb.", "7d", "test", "cap", "trial", "ends",
        "decision",
    ]  # fmt: skip
    rows = {line.split()[0].rstrip("…"): line for line in listed[1:4]}
    ends = {key[:8]: line for key, line in rows.items()}
    assert f"{clock.day(30):%m/%d} (30d)" in ends["sakura-s"]
    assert f"{clock.day(-10):%m/%d} ended" in ends["midori-s"]
    assert f"{clock.day(41):%Y-%m-%d} (41d)" in ends["aozora-d"]  # another year: said
    assert "plan: seats planned" in listed[4]
    wide = stdout_lines(cli(config, "seats", "--wide", columns=columns))
    assert any(f"→ {clock.day(30)} (30d)" in line for line in wide)
