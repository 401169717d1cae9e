"""A decision recorded while the daily job claims an offboarding task: one of them waits for
the other and then sees what it committed, so a company that continues is never offboarded,
and a continue is never recorded beside an offboarding already under way."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import transaction
from edrtrial.devices.offboarding import ROUTE
from edrtrial.devices.states import OFFBOARDING
from edrtrial.errors import JourneyError
from edrtrial.models import Company, Device, ResponseAction, Tenant, Trial
from edrtrial.programme.trial_steps import record_decision
from edrtrial.states import ActionState

AT = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)  # after the trial's end
Step = Callable[[Session], object]


def offboarding_company(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        company = Company(
            key="kestrel",
            name="Kestrel Works",
            contact_email="it@kestrel.example.jp",
            state="offboarding",
            state_since=AT,
        )
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector="fake", external_id="tenant-kestrel")
        session.add(tenant)
        session.add(
            Trial(company_id=company.id, starts_on=date(2026, 11, 25), ends_on=date(2027, 2, 24))
        )
        session.flush()
        device = Device(tenant_id=tenant.id, source_id="d1", name="PC1", in_inventory=True)
        session.add(device)
        session.flush()
        session.add(
            ResponseAction(
                dedupe_key="offboard:x",
                tenant_id=tenant.id,
                device_id=device.id,
                kind="offboard",
                status=ActionState.PLANNED,
            )
        )


def claiming(session: Session) -> str | None:
    """The send path's claim: the check at send time, then planned → sending."""
    task = session.scalars(select(ResponseAction)).one()
    device = session.get_one(Device, task.device_id)
    why = ROUTE.check_send(session, task, device, AT)
    if why is None:
        assert OFFBOARDING.move(session, task, "claim", detail="sending", updated_at=AT)
    return why


def deciding(session: Session) -> object:
    company = session.scalars(select(Company)).one()
    return record_decision(
        session,
        company,
        "continue",
        today=date(2027, 3, 1),
        reminder_window=14,
        actor="cli:secretariat",
        at=AT,
    )


def at_once(sessions: sessionmaker[Session], first: Step, second: Step) -> list[object]:
    """Run `first` in a transaction held open until `second` has started in another; the
    second must wait for the first, then see what it committed. What each returned or
    raised, in order."""
    first_done, commit_first = threading.Event(), threading.Event()
    results: list[object] = [None, None]

    def run(index: int, step: Step, done: threading.Event | None = None) -> None:
        try:
            with transaction(sessions) as session:
                results[index] = step(session)
                if done is not None:
                    done.set()
                    commit_first.wait(10)
        except BaseException as err:  # the test thread looks at it
            results[index] = err
            first_done.set()

    threads = [
        threading.Thread(target=run, args=(0, first, first_done)),
        threading.Thread(target=run, args=(1, second)),
    ]
    threads[0].start()
    assert first_done.wait(10)
    threads[1].start()
    threads[1].join(1)
    assert threads[1].is_alive(), "the second step read the trial before the first committed"
    commit_first.set()
    for thread in threads:
        thread.join(20)
    return results


@pytest.fixture
def postgres_only(engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the race needs PostgreSQL's row locks")


def test_a_continue_recorded_while_a_task_is_claimed_is_refused(sessions, postgres_only):
    offboarding_company(sessions)
    claimed, decided = at_once(sessions, claiming, deciding)
    assert claimed is None
    assert isinstance(decided, JourneyError) and "already sent to the EDR" in str(decided)
    with sessions() as session:
        assert session.scalars(select(Trial.decision)).one() == "undecided"


def test_a_task_claimed_while_a_continue_is_recorded_is_cancelled(sessions, postgres_only):
    offboarding_company(sessions)
    decided, claimed = at_once(sessions, deciding, claiming)
    assert not isinstance(decided, BaseException), decided
    assert isinstance(claimed, str) and "decided to continue" in claimed
    with sessions() as session:
        assert session.scalars(select(ResponseAction.status)).one() == ActionState.PLANNED
