"""The trial calendar: every trial's dates and days left counted from the test's today (JST),
the decision, and how far the uninstall of a company that does not continue has gone; in the
terminal, as JSON and as a CSV for Excel."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.base import ActionKind
from edrtrial.db import transaction
from edrtrial.models import Cohort, Company, Device, ResponseAction, Tenant, Trial
from edrtrial.programme.trial_calendar import trial_calendar
from edrtrial.reports.trial_calendar import CALENDAR_HEADINGS, Offboarding
from edrtrial.states import ActionState, JourneyState
from edrtrial.timeutil import jst_date

from sandbox_config import settings, write_config

S = ActionState


def add_trial(
    session: Session,
    key: str,
    cohort: Cohort,
    *,
    ends_in: int,
    state: JourneyState,
    decision: str = "undecided",
    tasks: tuple[ActionState, ...] = (),
    today: date,
) -> None:
    """A company whose 90-day trial ends `ends_in` days from today, with one device and
    offboarding task per status in `tasks`."""
    company = Company(
        key=key,
        name=f"{key} 株式会社",
        contact_email=f"it@{key}.example.jp",
        cohort_id=cohort.id,
        state=state.value,
    )
    session.add(company)
    session.flush()
    ends_on = today + timedelta(days=ends_in)
    session.add(
        Trial(
            company_id=company.id,
            starts_on=ends_on - timedelta(days=89),
            ends_on=ends_on,
            decision=decision,
        )
    )
    tenant = Tenant(company_id=company.id, connector="defender", external_id=f"t-{key}")
    session.add(tenant)
    session.flush()
    for i, status in enumerate(tasks):
        device = Device(tenant_id=tenant.id, source_id=f"{key}-{i}", name=f"{key}-pc-{i}")
        session.add(device)
        session.flush()
        session.add(
            ResponseAction(
                dedupe_key=f"offboard:{key}:{i}",
                tenant_id=tenant.id,
                device_id=device.id,
                kind=ActionKind.OFFBOARD.value,
                status=status.value,
            )
        )
    session.flush()


@pytest.fixture
def today(sessions: sessionmaker[Session], now: datetime) -> date:
    """Five trials: one mid-way, one ending today, one that continues, one being uninstalled
    (and "offb" whose key starts like it, with nothing to uninstall), one uninstalled; and a
    purged one, which the calendar leaves out."""
    today = jst_date(now)
    with transaction(sessions) as session:
        cohort = Cohort(key="c1", name="第1期", course="edr", capacity=50)
        session.add(cohort)
        session.flush()
        add_trial(session, "mid", cohort, ends_in=40, state=JourneyState.IN_TRIAL, today=today)
        add_trial(session, "last", cohort, ends_in=0, state=JourneyState.ENDING, today=today)
        add_trial(session, "cont", cohort, ends_in=-3, state=JourneyState.CONTINUING,
                  decision="continue", today=today)  # fmt: skip
        add_trial(session, "offb-going", cohort, ends_in=-2, state=JourneyState.OFFBOARDING,
                  decision="offboard", today=today,
                  tasks=(S.PLANNED, S.SENDING, S.SUCCEEDED, S.VERIFIED, S.MANUAL, S.CANCELLED,
                         S.STILL_REPORTING))  # fmt: skip
        add_trial(session, "offb", cohort, ends_in=-2, state=JourneyState.IN_TRIAL,
                  decision="offboard", today=today)  # fmt: skip
        add_trial(session, "gone", cohort, ends_in=-30, state=JourneyState.OFFBOARDED,
                  decision="offboard", tasks=(S.VERIFIED, S.VERIFIED), today=today)  # fmt: skip
        add_trial(session, "A7K2", cohort, ends_in=-400, state=JourneyState.PURGED,
                  decision="offboard", today=today)  # fmt: skip
    return today


def test_days_left_and_the_uninstall_s_progress_against_today(sessions, today):
    with sessions() as session:
        entries = trial_calendar(session, today)

    assert [e.company_key for e in entries] == ["gone", "cont", "offb", "offb-going", "last", "mid"]
    days = {e.company_key: e.days_left for e in entries}
    assert days == {"gone": -30, "cont": -3, "offb": -2, "offb-going": -2, "last": 0, "mid": 40}
    found = {e.company_key: e for e in entries}
    assert found["mid"].ends_on == today + timedelta(days=40) and not found["mid"].ended
    assert found["gone"].ended and found["gone"].offboarding == Offboarding(done=2)
    assert (found["cont"].decision, found["cont"].journey) == ("continue", JourneyState.CONTINUING)
    assert found["cont"].offboarding.total == 0
    # The cancelled task counts nowhere; the device still reporting is to check.
    assert found["offb-going"].offboarding == Offboarding(
        planned=1, sent=2, done=1, manual=1, trouble=1
    )
    assert found["offb"].offboarding == Offboarding()  # nothing of offb-going's


def cli(config: Path, *args: str) -> Result:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(config), *args], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def config(tmp_path: Path, database_url: str, today: date) -> Path:
    return write_config(tmp_path / "config.toml", settings(database_url), companies=0)


def test_trial_calendar_in_the_terminal_as_json_and_as_csv(config, tmp_path, today):
    shown = cli(config, "trial", "calendar", "--wide").stdout
    rows = {line.split()[0]: line for line in shown.splitlines() if line[:1].isalpha()}
    assert "40 days left" in rows["mid"] and "ends today" in rows["last"]
    assert "ended 3 days ago" in rows["cont"] and "continue" in rows["cont"]
    assert "1/6 done, 2 sent, 1 planned, 1 manual, 1 to check" in rows["offb-going"]
    assert "2/2 done" in rows["gone"] and "offboarded" in rows["gone"]
    assert f"6 trial(s); days counted from {today.isoformat()} (JST)" in shown

    as_json = json.loads(cli(config, "trial", "calendar", "--json").stdout)
    assert [r["company"] for r in as_json][:2] == ["gone", "cont"]
    going = next(r for r in as_json if r["company"] == "offb-going")
    assert going["days_left"] == -2 and going["offboarding"] == {
        "devices": 6, "planned": 1, "sent": 2, "done": 1, "manual": 1, "to_check": 1,
    }  # fmt: skip

    target = tmp_path / "calendar.csv"
    cli(config, "trial", "calendar", "--csv", str(target))
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    header, *body = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert tuple(header) == CALENDAR_HEADINGS
    found = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert list(found) == ["gone", "cont", "offb", "offb-going", "last", "mid"]
    assert found["cont"]["体験終了日"] == (today - timedelta(days=3)).isoformat()
    assert (found["cont"]["残り日数"], found["cont"]["残り期間"]) == ("-3", "終了から3日")
    assert (found["mid"]["残り日数"], found["mid"]["残り期間"]) == ("40", "残り40日")
    assert found["cont"]["継続の意向"] == "継続" and found["mid"]["継続の意向"] == "未定"
    assert found["offb-going"]["状況"] == "アンインストール中"
    assert found["offb-going"]["アンインストール完了"] == "1"
    assert found["offb-going"]["手動アンインストール"] == "1"
    assert found["offb"]["アンインストール対象台数"] == "0"


def test_at_80_columns_each_trial_s_end_and_days_left_are_whole(config, today):
    """What the secretariat acts on is never cut: the end (compact, like `seats`), the days
    left; the start is for --wide."""
    result = CliRunner().invoke(
        _main(), ["--config", str(config), "trial", "calendar"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split()[3:5] == ["end", "days"]
    mid = today + timedelta(days=40)
    shown = mid.strftime("%m/%d") if mid.year == today.year else mid.isoformat()
    [row] = [line for line in lines if line.startswith("mid ")]
    assert f" {shown} " in row and "40 days left" in row
    [ended] = [line for line in lines if line.startswith("cont ")]
    assert "ended 3 days ago" in ended


def _main():  # imported late, as `cli` does
    from edrtrial.cli.main import main

    return main
