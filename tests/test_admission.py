"""Places first come, first served: the call holds one or puts the company on the waiting
list; a refusal, a failing pre-diagnosis or a withdrawal frees it for the first waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import transaction
from edrtrial.errors import JourneyError
from edrtrial.models import AuditEvent, Company, OutboxMessage, PreDiagnosis
from edrtrial.programme import cohorts
from edrtrial.programme.admission import Diagnosis
from edrtrial.service import admission

import clock
from admission_rows import add_cohort, eligible, settings

SETTINGS = settings()
ACTOR = "cli:sato"
PASS = Diagnosis(edr_users=40, utm_devices=1, free_hub_ports=2, antivirus="Defender")
EXISTING = Diagnosis(edr_users=40, existing_edr="CrowdStrike Falcon")


def at(minutes: int) -> object:
    return clock.NOW + timedelta(minutes=minutes)


def call(sessions: sessionmaker[Session], key: str, minute: int, **kw: object):
    with transaction(sessions) as session:
        return admission.call(session, SETTINGS, key, actor=ACTOR, at=at(minute), **kw)


def diagnose(sessions: sessionmaker[Session], key: str, found: Diagnosis, minute: int = 100):
    with transaction(sessions) as session:
        return admission.prediagnose(session, SETTINGS, key, found, actor=ACTOR, at=at(minute))


def states(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return {c.key: c.state for c in session.scalars(select(Company))}


def mails(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    """(recipient's company key, kind) of every queued mail, in order."""
    with sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [(m.recipient.split("@")[1].split(".")[0], m.kind) for m in rows]


def test_the_call_holds_a_place_until_the_cohort_is_full_then_the_waiting_list(sessions):
    add_cohort(sessions, capacity=2)
    eligible(sessions, "alpha", "beta", "gamma", "delta")
    for minute, key in enumerate(("alpha", "beta", "gamma", "delta")):
        outcome = call(sessions, key, minute, notes="規定・遵守事項に同意")
    assert states(sessions) == {
        "alpha": "call_confirmed",
        "beta": "call_confirmed",
        "gamma": "waiting_list",
        "delta": "waiting_list",
    }
    assert outcome.position == 2
    # The waiting ones are told, once each; those holding a place hear at the pre-diagnosis.
    assert mails(sessions) == [("gamma", "journey.waiting"), ("delta", "journey.waiting")]
    with sessions() as session:
        gamma = session.scalar(select(Company).where(Company.key == "gamma"))
        assert gamma is not None and gamma.queued_at == at(2) and gamma.place_since is None
        assert cohorts.waiting_position(session, gamma) == 1
        body = session.scalar(select(OutboxMessage.body_text).where(OutboxMessage.id == 1))
        assert "キャンセル待ち" in (body or "") and "1番目" in (body or "")


def test_a_freed_place_goes_to_the_first_called_and_each_is_told_once(sessions):
    add_cohort(sessions, capacity=2)
    eligible(sessions, "alpha", "beta", "gamma", "delta")
    # gamma applied before delta but delta's call came first: the call decides the order.
    for minute, key in ((0, "alpha"), (1, "beta"), (2, "delta"), (3, "gamma")):
        call(sessions, key, minute)

    refused = diagnose(sessions, "alpha", EXISTING)

    assert refused.state == "refused" and refused.reasons[0]["code"] == "existing_edr"
    assert "CrowdStrike Falcon" in refused.reasons[0]["ja"]
    assert [m.event for m in refused.moved] == ["moved_up"]
    assert states(sessions)["delta"] == "call_confirmed"
    assert states(sessions)["gamma"] == "waiting_list"
    with sessions() as session:
        move = session.scalar(select(AuditEvent).where(AuditEvent.action == "company.move_up"))
        assert move is not None and move.actor == ACTOR and move.target == "company:delta"
        assert "alpha" in move.detail["why"]
        delta = session.scalar(select(Company).where(Company.key == "delta"))
        assert delta is not None and delta.place_since == at(100)

    # gamma is pre-diagnosed while it waits: it keeps waiting, then moves up admitted.
    kept_waiting = diagnose(sessions, "gamma", PASS, 110)
    assert kept_waiting.state == "waiting_list"
    assert kept_waiting.event is None  # told of its place on the list already: no new mail
    with transaction(sessions) as session:
        withdrawn = admission.withdraw(
            session, SETTINGS, "beta", "社内の都合により辞退", actor=ACTOR, at=at(120)
        )
    assert withdrawn.state == "withdrawn"
    assert states(sessions)["gamma"] == "admitted"
    assert mails(sessions) == [
        ("delta", "journey.waiting"),
        ("gamma", "journey.waiting"),
        ("alpha", "journey.refused"),
        ("delta", "journey.moved_up"),
        ("gamma", "journey.admitted"),
    ]
    with sessions() as session:
        beta = session.scalar(select(Company).where(Company.key == "beta"))
        assert beta is not None and beta.withdrawn_at == at(120) and beta.place_since is None
        assert beta.cohort is not None and cohorts.places(session, beta.cohort).held == 2


def test_a_passing_pre_diagnosis_admits_with_the_planned_seats_in_two_audited_steps(sessions):
    add_cohort(sessions)
    eligible(sessions, "alpha")
    call(sessions, "alpha", 0)
    outcome = diagnose(sessions, "alpha", Diagnosis(edr_users=300, policy="published"))
    assert outcome.state == "admitted" and outcome.event == "admitted"
    with sessions() as session:
        alpha = session.scalar(select(Company).where(Company.key == "alpha"))
        assert alpha is not None and alpha.planned_seats == 300 and alpha.seat_cap == 300
        steps = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.target == "company:alpha")
            .order_by(AuditEvent.id)
        ).all()
        assert steps == ["company.call", "company.diagnose", "company.admit"]
        record = session.scalar(select(PreDiagnosis))
        assert record is not None and record.outcome == "passed" and record.done_by == "sato"
    assert mails(sessions) == [("alpha", "journey.admitted")]


def test_planned_seats_above_the_cap_are_refused_in_the_course_unit(sessions):
    add_cohort(sessions, "edr1")
    add_cohort(sessions, "cy1", course="cycraft")
    eligible(sessions, "users")
    eligible(sessions, "devices", course="cycraft")
    call(sessions, "users", 0)
    call(sessions, "devices", 1)
    users = diagnose(sessions, "users", Diagnosis(edr_users=301))
    devices = diagnose(sessions, "devices", Diagnosis(edr_users=301))
    assert users.state == devices.state == "refused"
    assert "301名" in users.reasons[0]["ja"] and "300名まで" in users.reasons[0]["ja"]
    assert "301台" in devices.reasons[0]["ja"] and "devices" in devices.reasons[0]["en"]
    with sessions() as session:
        body = session.scalar(
            select(OutboxMessage.body_text).where(OutboxMessage.recipient == "it@users.example.jp")
        )
        assert body is not None and "301名" in body and "ご参加いただくことができません" in body


def test_an_existing_edr_is_refused_only_by_a_course_that_refuses_it(sessions):
    add_cohort(sessions, "av1", course="av")
    eligible(sessions, "alpha", course="av")
    call(sessions, "alpha", 0)
    assert diagnose(sessions, "alpha", EXISTING).state == "admitted"


def test_the_refusal_mail_is_in_the_company_language(sessions):
    add_cohort(sessions)
    eligible(sessions, "alpha", language="en")
    call(sessions, "alpha", 0)
    diagnose(sessions, "alpha", EXISTING)
    with sessions() as session:
        mail = session.scalar(select(OutboxMessage))
        assert mail is not None and mail.subject.startswith("[EDR trial]")
        assert "already installed" in mail.body_text and "Dear 山田 花子," in mail.body_text


def test_a_mail_is_queued_once_per_company_and_event(sessions):
    from edrtrial.notify.journey_mail import tell

    add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta")
    call(sessions, "alpha", 0)
    call(sessions, "beta", 1)
    with transaction(sessions) as session:
        beta = session.scalar(select(Company).where(Company.key == "beta"))
        assert beta is not None
        tell(session, beta, "waiting", SETTINGS.programme, SETTINGS.desk, position=1)
    assert mails(sessions) == [("beta", "journey.waiting")]


def test_the_cohort_is_chosen_by_course_and_room_and_a_closed_one_takes_nobody(sessions):
    add_cohort(sessions, "old", capacity=1, created_at=clock.NOW - timedelta(days=30))
    add_cohort(sessions, "new", capacity=1)
    add_cohort(sessions, "shut", closed=True)
    eligible(sessions, "alpha", "beta", "gamma", "delta")
    assert call(sessions, "alpha", 0).cohort_key == "old"
    assert call(sessions, "beta", 1).cohort_key == "new"
    # Both full: the oldest open cohort's waiting list.
    assert call(sessions, "gamma", 2).cohort_key == "old"
    with pytest.raises(JourneyError, match="cohort 'shut' is closed"):
        call(sessions, "delta", 3, cohort="shut")
    with pytest.raises(JourneyError, match="no cohort 'Old'.*did you mean 'old'"):
        call(sessions, "delta", 3, cohort="Old")
    eligible(sessions, "epsilon", course="cycraft")
    with pytest.raises(JourneyError, match="no open cohort of the course 'cycraft'.*cohorts add"):
        call(sessions, "epsilon", 4)
    assert states(sessions)["delta"] == "eligible"


def test_a_closed_cohort_still_fills_from_its_waiting_list(sessions):
    cohort_id = add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta")
    call(sessions, "alpha", 0)
    call(sessions, "beta", 1)
    with transaction(sessions) as session:
        session.get_one(cohorts.Cohort, cohort_id).closed = True
    with transaction(sessions) as session:
        admission.refuse(session, SETTINGS, "alpha", "反社会的勢力との関係", actor=ACTOR, at=at(5))
    assert states(sessions) == {"alpha": "refused", "beta": "call_confirmed"}


def test_the_call_is_taken_only_from_eligible_and_only_once(sessions):
    add_cohort(sessions)
    eligible(sessions, "alpha")
    eligible(sessions, "review", state="needs_review")
    call(sessions, "alpha", 0)
    with pytest.raises(
        JourneyError, match="'alpha' is call_confirmed; call needs it to be eligible"
    ):
        call(sessions, "alpha", 1)
    with pytest.raises(JourneyError, match="'review' is needs_review"):
        call(sessions, "review", 1)
    with pytest.raises(JourneyError, match="no company 'ALPHA'.*did you mean 'alpha'"):
        call(sessions, "ALPHA", 1)


def test_withdrawing_once_connected_offboards_and_keeps_the_place(sessions):
    add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta")
    call(sessions, "alpha", 0)
    call(sessions, "beta", 1)
    diagnose(sessions, "alpha", PASS)
    with transaction(sessions) as session:
        session.execute(
            Company.__table__.update().where(Company.key == "alpha").values(state="in_trial")
        )
    with transaction(sessions) as session:
        outcome = admission.withdraw(session, SETTINGS, "alpha", "経営判断", actor=ACTOR, at=at(9))
    assert outcome.state == "offboarding" and not outcome.moved
    assert states(sessions)["beta"] == "waiting_list"
    with sessions() as session:
        alpha = session.scalar(select(Company).where(Company.key == "alpha"))
        assert alpha is not None and alpha.withdrawn_at == at(9)


def test_nothing_to_withdraw_from_once_finished(sessions):
    add_cohort(sessions)
    eligible(sessions, "alpha", state="offboarded")
    with pytest.raises(JourneyError, match="'alpha' is offboarded; withdraw needs"):
        with transaction(sessions) as session:
            admission.withdraw(session, SETTINGS, "alpha", "x", actor=ACTOR, at=at(1))


Step = Callable[[Session], object]


def at_once(sessions: sessionmaker[Session], first: Step, second: Step) -> None:
    """Run `first` in a transaction held open until `second` has started in another; the
    second must wait for the first's lock on the cohort, then see what it committed."""
    first_done, commit_first = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run(step: Step, done: threading.Event | None = None) -> None:
        try:
            with transaction(sessions) as session:
                step(session)
                if done is not None:
                    done.set()
                    commit_first.wait(10)
        except BaseException as err:  # the test thread reports it
            failures.append(err)
            first_done.set()

    threads = [
        threading.Thread(target=run, args=(first, first_done)),
        threading.Thread(target=run, args=(second,)),
    ]
    threads[0].start()
    assert first_done.wait(10)
    threads[1].start()
    threads[1].join(1)
    assert threads[1].is_alive(), "the second step counted before the first committed"
    commit_first.set()
    for thread in threads:
        thread.join(20)
    assert not failures, failures


def calling(key: str) -> Step:
    return lambda session: admission.call(session, SETTINGS, key, actor=ACTOR, at=at(0))


def test_two_calls_at_once_for_the_last_place_do_not_over_fill_the_cohort(sessions):
    add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta")
    at_once(sessions, calling("alpha"), calling("beta"))
    assert states(sessions) == {"alpha": "call_confirmed", "beta": "waiting_list"}


def test_a_call_while_a_refusal_gives_the_place_on_waits_behind_the_list(sessions):
    add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta", "gamma")
    call(sessions, "alpha", 0)
    call(sessions, "beta", 1)

    def refusing(session: Session) -> object:
        return admission.refuse(session, SETTINGS, "alpha", "重複申込", actor=ACTOR, at=at(5))

    at_once(sessions, refusing, calling("gamma"))
    assert states(sessions) == {
        "alpha": "refused",
        "beta": "call_confirmed",
        "gamma": "waiting_list",
    }


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("event", ["waiting", "moved_up", "admitted", "refused"])
def test_every_journey_mail_renders_in_both_languages(event, language):
    from edrtrial.notify.journey_mail import journey_mail

    company = Company(
        key="alpha", name="株式会社アルファ", contact_name="", language=language, course="edr"
    )
    reason = {"code": "x", "ja": "理由です", "en": "the reason"}
    mail = journey_mail(
        company, event, SETTINGS.programme, SETTINGS.desk, position=3, reasons=[reason]
    )
    assert mail.subject.startswith("【EDR体験】" if language == "ja" else "[EDR trial] ")
    assert "株式会社アルファ" in mail.text and "desk@example.jp" in mail.text
    assert ("ご担当者 様" if language == "ja" else "Dear contact person,") in mail.text
    if event == "refused":
        assert ("理由です" if language == "ja" else "the reason") in mail.text
    if event == "waiting":
        assert ("3番目" if language == "ja" else "waiting list: 3") in mail.text
