"""The secretariat's decisions around a trial's end, and what the daily job makes of them.

A company that continues is never offboarded, even one switched to continue after its
tasks were planned; an extension moves the reminders and the end; a withdrawal mid-trial
offboards at once; a decision that would undo an uninstall already sent is refused with the
devices it reached; a job that missed days asks once, with the latest reminder due.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from edrtrial.db import transaction
from edrtrial.models import Application, AuditEvent, Company, ResponseAction, Trial
from edrtrial.programme.journey import advance
from edrtrial.programme.trial_steps import add_months, trial_end
from edrtrial.service.summaries import describe
from edrtrial.service.trial_lifecycle import LifecycleOutcome, due_reminder

import clock
from sandbox_config import settings, write_config
from test_trial_lifecycle import (
    Service,
    at,
    edr_of,
    everything_in,
    machine_id,
    mails_to,
    offboard_tasks,
    state,
    store_company,
)

TODAY = clock.TODAY
DEVICES = [(machine_id(n), n) for n in ("AOI-PC1", "AOI-PC2")]


@pytest.fixture
def aoi(tmp_path: Path, now, engine: Engine, database_url: str) -> Iterator[Service]:
    """あおい商会, in its trial until 10 days from today (so: ending), undecided."""
    config = write_config(tmp_path / "config.toml", settings(database_url), companies=0)
    with transaction(sessionmaker(engine)) as session:
        store_company(session, "aoi", "あおい商会株式会社", "ja", "青井 一郎", DEVICES)
        company = session.scalars(select(Company)).one()
        company.state = "ending"
        start = TODAY - timedelta(days=80)
        session.add(Trial(company_id=company.id, starts_on=start, ends_on=END))
    running = Service(config, engine, {"aoi": edr_of("aoi", DEVICES)})
    yield running
    running.rt.close()


END = TODAY + timedelta(days=10)


def sent_to_edr(service: Service) -> list[str]:
    return [device for device, _ in service.edrs["aoi"].started]


def reminder_keys(service: Service) -> list[str]:
    return [
        m.dedupe_key.split(":", 3)[3]
        for m in mails_to(service.rt.sessions, "aoi")
        if m.kind == "trial_reminder"
    ]


def test_trials_last_the_months_of_their_course_to_the_day_before(now) -> None:
    assert trial_end(date(2026, 11, 25), 3) == date(2027, 2, 24)
    assert trial_end(date(2026, 12, 1), 3) == date(2027, 2, 28)
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)  # a leap year
    assert trial_end(date(2027, 1, 31), 1) == date(2027, 2, 27)
    assert trial_end(date(2026, 11, 30), 3) == date(2027, 2, 27)
    assert trial_end(date(2026, 10, 1), 12) == date(2027, 9, 30)


def test_only_the_latest_reminder_due_is_sent(now) -> None:
    end = date(2027, 2, 24)
    assert due_reminder([14, 7], end, end - timedelta(days=15)) is None
    assert due_reminder([14, 7], end, end - timedelta(days=14)) == 14
    assert due_reminder([14, 7], end, end - timedelta(days=8)) == 14
    assert due_reminder([14, 7], end, end - timedelta(days=3)) == 7
    assert due_reminder([14, 7], end, end) == 7
    assert due_reminder([14, 7], end, end + timedelta(days=1)) is None


def test_a_job_that_missed_days_asks_once_with_the_latest_reminder(aoi: Service) -> None:
    aoi.day(END - timedelta(days=3))  # the first run since T-14
    aoi.day(END - timedelta(days=2))
    assert reminder_keys(aoi) == [f"{END.isoformat()}:7"]
    [mail] = [m for m in mails_to(aoi.rt.sessions, "aoi") if m.kind == "trial_reminder"]
    assert "あと3日" in mail.body_text


def test_a_company_switched_to_continue_after_planning_is_never_offboarded(aoi: Service) -> None:
    after = END + timedelta(days=1)
    planned = aoi.cli(after, "offboarding", "--plan")  # the operator plans, sends nothing
    assert "2 new task(s) planned" in planned.output
    assert state(aoi.rt.sessions, "aoi") == "offboarding" and sent_to_edr(aoi) == []

    decided = aoi.cli(after, "trial", "decide", "aoi", "continue", "--reason", "late answer")
    assert "continues with the vendor" in decided.output and "journey: continuing" in decided.output
    assert "2 planned offboarding task(s) cancelled" in decided.output
    for day in range(1, 5):
        aoi.day(after + timedelta(days=day))
    assert sent_to_edr(aoi) == []
    assert set(offboard_tasks(aoi.rt.sessions, "aoi").values()) == {"cancelled"}
    assert state(aoi.rt.sessions, "aoi") == "continuing"
    with aoi.rt.sessions() as session:
        cancelled = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.cancelled")
        ).all()
    assert len(cancelled) == 2 and all(e.actor.startswith("cli:") for e in cancelled)


def test_a_continue_written_between_planning_and_sending_still_sends_nothing(
    aoi: Service,
) -> None:
    after = END + timedelta(days=1)
    aoi.cli(after, "offboarding", "--plan")
    with transaction(aoi.rt.sessions) as session:  # not through `trial decide`
        session.scalars(select(Trial)).one().decision = "continue"
    aoi.day(after)
    aoi.cli(after, "offboarding", "--company", "aoi", "--execute", "--yes", code=2)
    assert sent_to_edr(aoi) == []
    assert set(offboard_tasks(aoi.rt.sessions, "aoi").values()) == {"cancelled"}


def test_an_extension_moves_the_end_and_asks_again_before_the_new_end(aoi: Service) -> None:
    aoi.day(END - timedelta(days=7))
    assert reminder_keys(aoi) == [f"{END.isoformat()}:7"]
    new_end = END + timedelta(days=30)
    extended = aoi.cli(
        END - timedelta(days=5), "trial", "decide", "aoi", "extend", "--until", str(new_end)
    )
    assert f"trial end {new_end.isoformat()}" in extended.output
    assert "journey: in_trial" in extended.output
    aoi.day(END + timedelta(days=1))  # the old end has passed: nothing happens
    assert (
        state(aoi.rt.sessions, "aoi") == "in_trial" and offboard_tasks(aoi.rt.sessions, "aoi") == {}
    )
    aoi.day(new_end - timedelta(days=14))
    aoi.day(new_end - timedelta(days=7))
    assert reminder_keys(aoi) == [
        f"{END.isoformat()}:7",
        f"{new_end.isoformat()}:14",
        f"{new_end.isoformat()}:7",
    ]
    assert state(aoi.rt.sessions, "aoi") == "ending"
    aoi.day(new_end + timedelta(days=1))
    assert state(aoi.rt.sessions, "aoi") == "offboarding"
    assert sorted(sent_to_edr(aoi)) == sorted(i for i, _ in DEVICES)


def test_an_extension_is_never_into_the_past_nor_short_of_the_end(aoi: Service) -> None:
    past = aoi.cli(TODAY, "trial", "decide", "aoi", "extend", "--until", str(TODAY), code=2)
    assert "is not in the future" in past.output and "never extended into the past" in past.output
    short = aoi.cli(
        TODAY, "trial", "decide", "aoi", "extend", "--until", str(END - timedelta(days=1)), code=2
    )
    assert f"already runs until {END.isoformat()}" in short.output
    missing = aoi.cli(TODAY, "trial", "decide", "aoi", "extend", code=2)
    assert "extend needs --until DATE" in missing.output
    with aoi.rt.sessions() as session:
        assert session.scalars(select(Trial.ends_on)).one() == END


def test_a_decision_after_the_offboarding_was_sent_is_refused_naming_the_devices(
    aoi: Service,
) -> None:
    aoi.day(END + timedelta(days=1))
    assert len(sent_to_edr(aoi)) == 2
    refused = aoi.cli(END + timedelta(days=1), "trial", "decide", "aoi", "continue", code=2)
    assert refused.output.startswith("error: あおい商会株式会社 (aoi): its offboarding was already")
    assert "AOI-PC1 (pending), AOI-PC2 (pending)" in refused.output
    assert "under its own contract with the vendor" in refused.output
    later = END + timedelta(days=20)
    aoi.cli(
        END + timedelta(days=1), "trial", "decide", "aoi", "extend", "--until", str(later), code=2
    )
    with aoi.rt.sessions() as session:
        trial = session.scalars(select(Trial)).one()
    assert (trial.decision, trial.ends_on) == ("undecided", END)


def test_a_withdrawal_mid_trial_offboards_at_once_and_ends_offboarded(aoi: Service) -> None:
    day = END - timedelta(days=40)
    with transaction(aoi.rt.sessions) as session:  # as the withdrawal step records it
        company = session.scalars(select(Company)).one()
        company.state = "in_trial"
        company.withdrawn_at = at(day, 10)
        advance(session, company, "withdraw_connected", actor="cli:sato", at=at(day, 10))
    aoi.day(day, hour=12)
    assert sorted(sent_to_edr(aoi)) == sorted(i for i, _ in DEVICES)
    [told] = [m for m in mails_to(aoi.rt.sessions, "aoi") if m.kind == "trial_offboarding"]
    assert "本事業へのご参加を辞退されたため" in told.body_text
    assert f"{day:%Y/%m/%d}" in told.body_text
    edr = aoi.edrs["aoi"]
    aoi.day(day + timedelta(days=1))  # the EDR's success is read
    edr.devices = [replace(d, health_status="Inactive") for d in edr.devices]
    aoi.day(day + timedelta(days=2))  # and the devices are quiet in an inventory read since
    assert state(aoi.rt.sessions, "aoi") == "offboarded"
    assert len(sent_to_edr(aoi)) == 2  # each device once
    with aoi.rt.sessions() as session:
        tasks = session.scalars(select(ResponseAction.reason)).all()
    assert all("withdrew on" in reason for reason in tasks)


def test_start_needs_a_verified_tenant_and_names_where_the_company_stands(aoi: Service) -> None:
    refused = aoi.cli(TODAY, "trial", "start", "aoi", code=2)
    assert "company 'aoi' is ending; start needs it to be tenant_verified" in refused.output
    unknown = aoi.cli(TODAY, "trial", "decide", "nobody", "continue", code=2)
    assert "no company 'nobody' in the store" in unknown.output


def test_a_refused_application_is_purged_after_retention(aoi: Service) -> None:
    refused_on = TODAY - timedelta(days=90)
    with transaction(aoi.rt.sessions) as session:
        company = Company(
            key="kumo-sangyo",
            name="くも産業株式会社",
            contact_name="雲野 次郎",
            contact_email="jiro@kumo.example.jp",
            representative="雲野 太郎",
            address="東京都港区芝1-1-1",
            state="refused",
            state_since=at(refused_on, 15),
            state_reason="既にEDRを導入済み",
        )
        session.add(company)
        session.flush()
        session.add(
            Application(
                company_id=company.id,
                received_at=at(refused_on - timedelta(days=5)),
                fingerprint=machine_id("kumo"),
                raw={"会社名": "くも産業株式会社", "電話番号": "03-5555-0000"},
                call_notes="雲野様：EDR導入済みとのこと",
            )
        )
    aoi.day(TODAY - timedelta(days=1))
    assert state(aoi.rt.sessions, "kumo-sangyo") == "refused"  # one day short
    outcome = aoi.day(TODAY)
    assert outcome[0].purged == 1
    with aoi.rt.sessions() as session:
        purged = session.scalars(select(Company).where(Company.state == "purged")).one()
        application = session.scalars(
            select(Application).where(Application.company_id == purged.id)
        ).one()
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.purge")
        ).one()
    assert purged.key == purged.anon_code.lower() and purged.name == purged.anon_code
    assert (purged.contact_email, purged.representative, purged.address) == ("", "", "")
    assert application.raw == {} and application.call_notes == ""
    assert audit.target == f"company:{purged.key}" and audit.detail["from"] == "refused"
    assert "くも" not in everything_in(aoi.engine) and "雲野" not in everything_in(aoi.engine)


def test_the_job_says_in_words_what_it_did() -> None:
    assert describe("trial-lifecycle", LifecycleOutcome()) == "0 offboarding tasks planned"
    said = describe(
        "trial-lifecycle",
        LifecycleOutcome(
            planned=3, reminders=2, sent=2, offboarded=1, problems=("aoi: tenant parked",)
        ),
    )
    assert said == (
        "3 offboarding tasks planned, 2 reminders queued, 2 offboarding tasks sent, "
        "1 offboarded; aoi: tenant parked"
    )


def test_an_extension_after_the_end_before_any_send_takes_the_company_back(aoi: Service) -> None:
    after = END + timedelta(days=1)
    aoi.cli(after, "offboarding", "--plan")
    assert state(aoi.rt.sessions, "aoi") == "offboarding"
    new_end = END + timedelta(days=5)
    extended = aoi.cli(after, "trial", "decide", "aoi", "extend", "--until", str(new_end))
    assert "journey: ending" in extended.output  # back in the trial, its new end near
    assert "2 planned offboarding task(s) cancelled" in extended.output
    with aoi.rt.sessions() as session:
        steps = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.like("company.%"))
            .order_by(AuditEvent.id)
        ).all()
    assert steps[-3:] == ["company.offboard", "company.extend", "company.near_end"]
    aoi.day(new_end)
    assert sent_to_edr(aoi) == [] and reminder_keys(aoi)[-1] == f"{new_end.isoformat()}:7"
    aoi.day(new_end + timedelta(days=1))
    assert sorted(sent_to_edr(aoi)) == sorted(i for i, _ in DEVICES)  # planned anew, sent once
    statuses = sorted(offboard_tasks_all(aoi))
    assert statuses == ["cancelled", "cancelled", "pending", "pending"]


def offboard_tasks_all(service: Service) -> list[str]:
    with service.rt.sessions() as session:
        return list(session.scalars(select(ResponseAction.status)))


def test_a_company_that_said_continue_and_then_withdraws_is_offboarded(aoi: Service) -> None:
    day = END - timedelta(days=5)
    aoi.cli(day, "trial", "decide", "aoi", "continue")
    aoi.cli(day, "company", "withdraw", "aoi", "--reason", "事業を縮小するため")
    with aoi.rt.sessions() as session:
        trial = session.scalars(select(Trial)).one()
        assert trial.decision == "offboard"
        withdrawal = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.withdraw_connected")
        ).one()
    assert withdrawal.detail["decision"] == {"from": "continue", "to": "offboard"}
    assert withdrawal.actor.startswith("cli:")
    aoi.day(day, hour=12)
    assert sorted(sent_to_edr(aoi)) == sorted(i for i, _ in DEVICES)
    assert state(aoi.rt.sessions, "aoi") == "offboarding"
