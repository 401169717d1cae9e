"""What `company show` says is due next, from the application to the purge, with its date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session

from edrtrial.db import transaction
from edrtrial.models import Application, Company, Tenant, Trial
from edrtrial.programme import journey_view
from edrtrial.service import admission

import clock
from admission_rows import add_eligible, settings

SETTINGS = settings()
TODAY = clock.TODAY  # Wednesday 25 November 2026


def view(session: Session, company: Company) -> journey_view.CompanyView:
    due_on = admission.due_on(SETTINGS)
    return journey_view.company_view(session, SETTINGS.programme, company, due_on, TODAY)


def due(session: Session, company: Company) -> list[tuple[str, date | None, bool]]:
    return [(d.what, d.on, d.late) for d in view(session, company).due]


def with_trial(session: Session, state: str, ends_on: date, decision: str = "undecided"):
    company = add_eligible(session, state.replace("_", "-"), state=state)
    session.add(Tenant(company_id=company.id, connector="defender", external_id=f"t-{company.key}"))
    session.add(
        Trial(
            company_id=company.id,
            starts_on=ends_on - timedelta(days=91),
            ends_on=ends_on,
            decision=decision,
        )
    )
    session.flush()
    return company


def test_an_eligible_company_waits_for_its_call_by_its_day(sessions):
    with transaction(sessions) as session:
        on_time = add_eligible(session, "on-time", clock.NOW - timedelta(days=1))
        late = add_eligible(session, "late", clock.NOW - timedelta(days=7))
        assert due(session, on_time) == [("the confirmation call", date(2026, 11, 27), False)]
        # Received Wednesday 18: Thursday, Friday, then Tuesday 24 (Monday 23 is a holiday).
        assert due(session, late) == [("the confirmation call", date(2026, 11, 24), True)]


def test_an_application_left_for_review_past_the_call_s_day_is_overdue(sessions):
    # The call is due whatever the rules said: a review that waits makes it late too.
    with transaction(sessions) as session:
        late = add_eligible(session, "late", clock.NOW - timedelta(days=7), state="needs_review")
        assert due(session, late) == [
            ("a review of its eligibility, then the confirmation call", date(2026, 11, 24), True)
        ]
        due_on = admission.due_on(SETTINGS)
        rows = journey_view.application_rows(session, due_on, TODAY, overdue_only=True)
        assert [r.key for r in rows] == ["late"]


def test_in_trial_the_reminders_still_to_come_the_decision_and_the_end(sessions):
    ends = TODAY + timedelta(days=10)
    with transaction(sessions) as session:
        company = with_trial(session, "in_trial", ends)
        assert due(session, company) == [
            ("the reminder mail (T-7)", ends - timedelta(days=7), False),
            ("the company's decision (continue or offboard)", ends, False),
            ("the trial's end (undecided)", ends, False),
        ]
        decided = with_trial(session, "ending", TODAY + timedelta(days=20), "continue")
        # A company that answered is asked no more: the reminders go to undecided ones only.
        assert [d[0] for d in due(session, decided)] == ["the trial's end (continue)"]


def test_after_the_trial_and_before_it(sessions):
    with transaction(sessions) as session:
        verified = with_trial(session, "tenant_verified", TODAY + timedelta(days=95))
        assert due(session, verified) == [("the trial's start", TODAY + timedelta(days=4), False)]
        admitted = add_eligible(session, "admitted", state="admitted")
        assert view(session, admitted).due[0].command == "edrtrial tenants consent-url admitted"
        refused = add_eligible(session, "refused", state="refused")
        refused.state_since = clock.NOW
        assert due(session, refused) == [
            ("the purge of its detailed data", TODAY + timedelta(days=90), False)
        ]


def test_repeats_follow_the_application_the_journey_follows(sessions):
    with transaction(sessions) as session:
        company = add_eligible(session, "alpha", clock.NOW - timedelta(days=2))
        first = session.query(Application).one()
        session.add(
            Application(
                company_id=company.id,
                received_at=clock.NOW - timedelta(days=1),
                fingerprint="fp-again",
                raw={"会社名": "(株)alpha"},
                repeat_of=first.id,
            )
        )
        session.flush()
        shown = view(session, company)
        assert shown.application is first
        assert [a.repeat_of for a in shown.applications] == [None, first.id]


@pytest.mark.parametrize("state", ["purged", "continuing"])
def test_nothing_is_due_at_the_journey_s_ends(sessions, state):
    with transaction(sessions) as session:
        company = add_eligible(session, "alpha", state=state)
        assert due(session, company)[0][0].startswith("nothing")


def test_once_the_consent_link_went_out_the_consent_is_due(sessions):
    from edrtrial import audit
    from edrtrial.programme.consent import ISSUED

    with transaction(sessions) as session:
        company = add_eligible(session, "alpha", state="admitted")
        assert "consent-url alpha" in view(session, company).due[0].command
        audit.record(
            session,
            at=clock.NOW,
            actor="cli:sato",
            action=ISSUED,
            tenant_id=None,
            target="company:alpha",
        )
        session.flush()
        (due_now,) = view(session, company).due
        assert due_now.what == "its administrator's consent (the link went out 2026-11-25)"
        assert due_now.command.startswith("edrtrial tenants consented alpha")
