"""The secretariat's commands for admission, as an operator's terminal shows them: the call,
the pre-diagnosis, a withdrawal, the cohorts' places, `applications list` within 80 and 100
columns, and `company show` with what is due next and who did what."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.cells import cell_len
from sqlalchemy import select

from edrtrial.cli.common import login_name
from edrtrial.db import transaction
from edrtrial.models import OutboxMessage

import clock
from admission_rows import add_eligible
from sandbox_config import settings, write_config

LONG_NAME = "株式会社とても長い名前の精密機械製作所ホールディングス東京本社"


@pytest.fixture
def config(tmp_path: Path, database_url: str, sessions, now) -> Path:
    """The example's settings on the test's store, with no company in the config; four
    eligible companies in the store, received on Friday 20 November (Monday 23 is a holiday)."""
    data = settings(database_url, mail_dir=tmp_path / "mail")
    friday = clock.NOW - timedelta(days=5)
    with transaction(sessions) as session:
        for i, key in enumerate(("alpha", "beta", "gamma")):
            add_eligible(session, key, friday + timedelta(minutes=i))
        add_eligible(session, "long", friday + timedelta(minutes=9), name=LONG_NAME)
    return write_config(tmp_path / "config.toml", data, companies=0)


def cli(config: Path, *args: str, code: int = 0, columns: int | None = None) -> Result:
    from edrtrial.cli.main import main

    env = {"COLUMNS": str(columns) if columns else ""}
    result = CliRunner().invoke(main, ["--config", str(config), *args], env=env)
    assert result.exit_code == code, result.output
    return result


def lines(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if " INFO " not in line]


def test_from_the_call_to_admission_the_waiting_list_moving_up(config, sessions):
    added = cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "1")
    assert "cohort c1: 1 places, course edr, trials of 3 months" in added.stdout
    held = cli(config, "applications", "call", "alpha", "--notes", "規定・遵守事項に同意")
    assert "alpha: call_confirmed (a place in cohort c1)" in held.stdout
    waiting = cli(config, "applications", "--by", "tanaka", "call", "beta")
    assert "beta: waiting_list (position 1 on cohort c1's list)" in waiting.stdout
    assert "mail queued to beta (waiting)" in waiting.stdout
    places = json.loads(cli(config, "cohorts", "list", "--json").stdout)
    assert places[0] | {"name": ""} == {
        "key": "c1", "name": "", "course": "edr", "capacity": 1, "held": 1, "waiting": 1,
        "free": 0, "trial_months": 3, "closed": False,
    }  # fmt: skip

    refused = cli(
        config, "applications", "prediagnose", "alpha", "--edr-users", "20",
        "--existing-edr", "Sophos Intercept X", "--policy", "partial",
    )  # fmt: skip
    assert "alpha: refused" in refused.stdout
    assert "Sophos Intercept X" in refused.stdout
    assert "beta: moved up from the waiting list, now call_confirmed; mail queued" in refused.stdout
    admitted = cli(
        config, "applications", "prediagnose", "beta", "--edr-users", "45",
        "--no-existing-edr", "--free-hub-ports", "4", "--network", "1 router, 2 hubs",
    )  # fmt: skip
    assert "beta: admitted (a place in cohort c1)" in admitted.stdout

    shown = "\n".join(lines(cli(config, "company", "show", "beta")))
    assert "state: admitted 参加確定" in shown
    assert "cohort: c1 第1期 (1 of 1 held, 0 waiting)" in shown
    assert "pre-diagnosis: passed" in shown and "EDR users planned: 45" in shown
    assert "as received: 資本金: 1,000万円" in shown
    assert "the consent URL to send to its administrator: edrtrial tenants consent-url beta" in (
        shown
    )
    me = f"cli:{login_name()}"
    assert f"company.queue eligible → waiting_list  by {me} for tanaka" in shown
    assert f"company.move_up waiting_list → call_confirmed  by {me}" in shown
    assert "company.admit pre_diagnosed → admitted" in shown
    with sessions() as session:
        kinds = [(m.recipient, m.kind) for m in session.scalars(select(OutboxMessage))]
    assert kinds == [
        ("it@beta.example.jp", "journey.waiting"),
        ("it@alpha.example.jp", "journey.refused"),
        ("it@beta.example.jp", "journey.moved_up"),
        ("it@beta.example.jp", "journey.admitted"),
    ]


def test_a_withdrawal_gives_the_place_to_the_next(config):
    cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "1")
    cli(config, "applications", "call", "alpha")
    cli(config, "applications", "call", "beta")
    out = cli(config, "company", "withdraw", "alpha", "--reason", "社内の都合").stdout
    assert "alpha: withdrawn" in out and "beta: moved up" in out
    shown = "\n".join(lines(cli(config, "company", "show", "alpha")))
    assert "why: 社内の都合" in shown and "the purge of its detailed data on" in shown


def test_the_list_shows_each_call_due_and_counts_the_overdue(config):
    cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "1")
    cli(config, "applications", "call", "alpha")
    # Wednesday 25: the calls of Friday's applications are due on Thursday 26.
    today = json.loads(cli(config, "applications", "list", "--json").stdout)
    assert [(r["key"], r["call_due_on"], r["overdue"]) for r in today] == [
        ("alpha", "2026-11-26", False),
        ("beta", "2026-11-26", False),
        ("gamma", "2026-11-26", False),
        ("long", "2026-11-26", False),
    ]
    assert lines(cli(config, "applications", "list"))[-1] == (
        "4 companies; 0 call(s) overdue; times in JST"
    )
    with clock.travel(clock.NOW + timedelta(days=2)):  # Friday 27
        overdue = cli(config, "applications", "list", "--overdue", columns=100)
        listed = lines(overdue)
        assert [line.split()[0] for line in listed[1:-2]] == ["beta", "gamma", "long"]
        assert "11/26 Thu !" in listed[1]
        assert listed[-2] == "3 companies; 3 call(s) overdue; times in JST"
        held = json.loads(
            cli(config, "applications", "list", "--status", "call_confirmed", "--json").stdout
        )
        assert [(r["key"], r["overdue"], r["place"]) for r in held] == [("alpha", False, "held")]
        shown = "\n".join(lines(cli(config, "company", "show", "beta")))
        assert (
            "the confirmation call on 2026-11-26 (Thu): edrtrial applications call beta  (overdue)"
            in shown
        )


@pytest.mark.parametrize("columns", (80, 100))
def test_the_lists_keep_a_row_a_line_within_the_terminal(config, columns):
    cli(config, "cohorts", "add", "c1", "--name", LONG_NAME, "--capacity", "50")
    cli(config, "applications", "call", "long")
    for command in (("applications", "list"), ("cohorts", "list")):
        listed = lines(cli(config, *command, columns=columns))
        assert not [line for line in listed if cell_len(line) > columns], command
    listed = lines(cli(config, "applications", "list", columns=columns))
    assert LONG_NAME not in "\n".join(listed) and "…" in "\n".join(listed)
    wide = "\n".join(lines(cli(config, "applications", "list", "--wide", columns=columns)))
    assert LONG_NAME in wide and "call_confirmed 申込完了(電話確認済)" in wide
    assert "eligible 要件確認済" in wide


@pytest.mark.parametrize(
    "command",
    [
        ("applications", "call", "{}"),
        ("applications", "refuse", "{}", "--reason", "x"),
        ("company", "show", "{}"),
        ("company", "withdraw", "{}", "--reason", "x"),
        ("tenants", "consent-url", "{}"),
        ("tenants", "consented", "{}", "--tenant-id", "contoso.onmicrosoft.com"),
    ],
)
def test_an_unknown_or_miscased_key_is_a_one_line_error(config, command):
    unknown = cli(config, *(a.format("nosuch") for a in command), code=2)
    assert unknown.output.strip() == "error: no company 'nosuch' in the store"
    cased = cli(config, *(a.format("Alpha") for a in command), code=2)
    assert cased.output.strip().endswith("keys are lower case; did you mean 'alpha'?")
    assert len(cased.output.strip().splitlines()) == 1


def test_no_open_cohort_and_a_closed_one_are_said_plainly(config):
    none = cli(config, "applications", "call", "alpha", code=2).output
    assert "no open cohort of the course 'edr': add one with `edrtrial cohorts add`" in none
    cli(config, "cohorts", "add", "shut", "--name", "締切", "--capacity", "5", "--closed")
    closed = cli(config, "applications", "call", "alpha", "--cohort", "shut", code=2).output
    assert "cohort 'shut' is closed" in closed
    unknown_course = cli(
        config, "cohorts", "add", "x", "--name", "x", "--capacity", "5", "--course", "utm", code=2
    ).output
    assert "no course 'utm'" in unknown_course


def test_the_pre_diagnosis_must_say_whether_an_edr_is_installed(config):
    cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "5")
    cli(config, "applications", "call", "alpha")
    missing = cli(config, "applications", "prediagnose", "alpha", "--edr-users", "5", code=2)
    assert "give --existing-edr NAME or --no-existing-edr" in missing.output
    over = cli(
        config, "applications", "prediagnose", "alpha", "--edr-users", "301", "--no-existing-edr"
    ).stdout
    assert "alpha: refused" in over and "301 planned EDR users: at most 300 per company" in over


def test_a_larger_capacity_lets_the_waiting_in_and_a_closed_cohort_takes_nobody_new(config):
    cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "1")
    for key in ("alpha", "beta", "gamma"):
        cli(config, "applications", "call", key)
    out = cli(config, "cohorts", "set", "c1", "--capacity", "2", "--closed").stdout
    assert "cohort c1: 2 places, 2 held, 1 waiting, closed" in out
    assert "beta: moved up from the waiting list, now call_confirmed; mail queued" in out
    too_small = cli(config, "cohorts", "set", "c1", "--capacity", "1", code=2).output
    assert "cohort 'c1' has 2 places held: its capacity cannot be 1" in too_small
    refused = cli(config, "applications", "call", "long", code=2).output
    assert "no open cohort of the course 'edr'" in refused
    reopened = cli(config, "cohorts", "set", "c1", "--open").stdout
    assert "cohort c1: 2 places, 2 held, 1 waiting, open" in reopened


@pytest.mark.parametrize("key", ["C1", "第1期", "c 1", "c_1"])
def test_a_cohort_key_is_plain(config, key):
    out = cli(config, "cohorts", "add", key, "--name", "x", "--capacity", "5", code=2).output
    assert "lower-case letters, digits and '-'" in out


def test_the_imported_sample_goes_from_its_call_to_admission(tmp_path, database_url, sessions):
    """The web form's sample, as intake stores it, through the call and the pre-diagnosis."""
    data = settings(database_url, mail_dir=tmp_path / "mail")
    config = write_config(tmp_path / "sample.toml", data, companies=0)
    sample = files("edrtrial.programme") / "samples" / "applications.csv"
    cli(config, "applications", "import", str(sample))
    cli(config, "cohorts", "add", "2026-1", "--name", "令和8年度 第1期", "--capacity", "2")

    listed = {r["key"]: r for r in json.loads(cli(config, "applications", "list", "--json").stdout)}
    assert listed["c-1012345"]["call_due_on"] == "2026-12-03"  # as intake recorded it
    assert listed["c-1077777"]["state"] == "not_eligible" and listed["c-1077777"]["reasons"]
    for key in ("c-1012345", "c-1098765", "sp-0001"):
        cli(config, "applications", "call", key)
    assert listed["sp-0001"]["state"] == "eligible"
    admitted = cli(
        config, "applications", "prediagnose", "c-1098765", "--edr-users", "90",
        "--no-existing-edr",
    )  # fmt: skip
    assert "c-1098765: admitted (a place in cohort 2026-1)" in admitted.stdout
    shown = "\n".join(lines(cli(config, "company", "show", "c-1012345")))
    assert "法人番号 1012345" not in shown and "法人番号 5010801012345" in shown
    assert "as received: 会社名: 株式会社さくら製作所" in shown
    assert "call: done" in shown and "the pre-diagnosis (事前診断)" in shown
    waiting = json.loads(
        cli(config, "applications", "list", "--status", "waiting_list", "--json").stdout
    )
    assert [(r["key"], r["place"]) for r in waiting] == [("sp-0001", "waiting 1")]
    reasons = {
        r["key"]: r["reasons"]
        for r in json.loads(cli(config, "applications", "list", "--json").stdout)
    }
    assert reasons["c-1012345"] == []  # eligible: nothing to say why
    assert reasons["c-1077777"] == ["outside_prefecture"]
