"""Lost updates are gone: an operator and the desk's own jobs racing for one ticket.

Before the ticket state machine, the automatic close and the automatic reopen wrote
`Ticket.state` through the ORM, unconditionally: a close job that had read a ticket as
resolved overwrote an acknowledge made meanwhile. Now every write is a conditional UPDATE
from the state its writer saw, so one wins and the other is refused and says so.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import ChannelConfig, DeskConfig
from edrtrial.db import transaction
from edrtrial.desk import escalation, intake, states
from edrtrial.desk import operator as tickets
from edrtrial.desk.policy import DeskPolicy
from edrtrial.errors import TicketError
from edrtrial.models import Alert, AuditEvent, OutboxMessage, Ticket
from edrtrial.states import TicketState

from conftest import PG_ENV, add_tenant

T0 = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)  # a Tuesday, 10:00 JST
POLICY = DeskPolicy(
    DeskConfig(
        name="デスク",
        email="desk@example.jp",
        close_after_days=7,
        channels=[
            ChannelConfig(name="desk", kind="mail", to="desk@example.jp"),
            ChannelConfig(name="duty", kind="mail", to="duty@example.jp"),
        ],
    )
)
on_postgresql = pytest.mark.skipif(
    not os.environ.get(PG_ENV), reason="row locks are PostgreSQL's (CI sets " + PG_ENV + ")"
)


def ticket_in(sessions: sessionmaker[Session], state: TicketState, **fields: object) -> int:
    tenant_id = add_tenant(sessions, "acme", "株式会社アクメ")
    with transaction(sessions) as session:
        ticket = states.new_ticket(
            tenant_id=tenant_id,
            correlation_key="incident:1",
            correlation_base="incident:1",
            title="不審なPowerShell",
            priority="P2",
            channel="desk",
            created_at=T0,
            updated_at=T0,
            **fields,
        )
        session.add(ticket)
        session.flush()
        session.add(
            Alert(tenant_id=tenant_id, source="defender", source_id="a1", ticket_id=ticket.id)
        )
        if state is not TicketState.NEW:
            ticket_id = ticket.id
            session.flush()
            session.execute(  # the starting position of the race, set once
                Ticket.__table__.update()
                .where(Ticket.__table__.c.id == ticket_id)
                .values({"state": state.value})
            )
        return ticket.id


def state_of(sessions: sessionmaker[Session], ticket_id: int) -> str:
    with sessions() as session:
        return session.get_one(Ticket, ticket_id).state


def audited(sessions: sessionmaker[Session], action: str) -> int:
    with sessions() as session:
        return len(session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_close_job_that_read_the_ticket_as_resolved_does_not_undo_an_acknowledge(
    sessions, monkeypatch, caplog
):
    ticket_id = ticket_in(sessions, TicketState.RESOLVED, resolved_at=T0)
    now = T0 + timedelta(days=10)
    real_move = escalation.move

    def operator_acts_meanwhile(session, ticket, step, at, **values):
        # Between the job's query and its write: a new alert reopens the ticket, and an
        # operator acknowledges it, each in its own commit.
        with transaction(sessions) as other:
            seen = other.get_one(Ticket, ticket_id)
            states.move(other, seen, "auto-reopen", now, resolved_at=None)
        with transaction(sessions) as other:
            tickets.acknowledge(other, ticket_id, "cli:sato", now)
        return real_move(session, ticket, step, at, **values)

    monkeypatch.setattr(escalation, "move", operator_acts_meanwhile)
    with caplog.at_level(logging.INFO, logger="edrtrial.desk.escalation"):
        with transaction(sessions) as session:
            closed = escalation.close_quiet(session, POLICY, now)
    assert closed == []
    assert state_of(sessions, ticket_id) == TicketState.ACKNOWLEDGED
    assert audited(sessions, "ticket.closed") == 0
    assert f"ticket #{ticket_id} not closed" in caplog.text
    assert "acknowledged" in caplog.text


def test_an_operator_who_saw_a_resolved_ticket_is_told_it_was_closed_meanwhile(sessions):
    ticket_id = ticket_in(sessions, TicketState.RESOLVED, resolved_at=T0)
    now = T0 + timedelta(days=10)
    with sessions() as operator_view:
        seen = operator_view.get_one(Ticket, ticket_id)  # the operator's screen: resolved
        with transaction(sessions) as job:
            assert escalation.close_quiet(job, POLICY, now) == [ticket_id]
        with pytest.raises(TicketError, match=r"changed meanwhile \(it is closed now"):
            states.move(operator_view, seen, "reopen", now)
    assert state_of(sessions, ticket_id) == TicketState.CLOSED


def test_an_acknowledge_made_while_escalation_ran_keeps_its_deadline_cleared(sessions, monkeypatch):
    ticket_id = ticket_in(sessions, TicketState.NEW, ack_due_at=T0 + timedelta(minutes=30))
    now = T0 + timedelta(hours=1)
    real_move = escalation.move

    def acknowledged_meanwhile(session, ticket, step, at, **values):
        with transaction(sessions) as other:
            tickets.acknowledge(other, ticket_id, "cli:sato", now)
        return real_move(session, ticket, step, at, **values)

    monkeypatch.setattr(escalation, "move", acknowledged_meanwhile)
    with transaction(sessions) as session:
        assert escalation.escalate_overdue(session, POLICY, now) == []
    with sessions() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.state, ticket.ack_due_at, ticket.escalation_level) == (
            TicketState.ACKNOWLEDGED,
            None,
            0,
        )
        assert session.scalars(select(OutboxMessage)).all() == []  # nobody paged


def test_two_desk_jobs_escalating_one_ticket_escalate_it_once(sessions, monkeypatch):
    ticket_id = ticket_in(sessions, TicketState.NEW, ack_due_at=T0 + timedelta(minutes=30))
    now = T0 + timedelta(hours=1)
    real_move = escalation.move
    other_job_ran: list[list[int]] = []

    def another_job_first(session, ticket, step, at, **values):
        # `serve`'s desk job and `edrtrial run-job desk` both found the ticket overdue; the
        # other one writes first. Escalating keeps the state `new`, so the level tells.
        if not other_job_ran:
            monkeypatch.setattr(escalation, "move", real_move)
            with transaction(sessions) as other:
                other_job_ran.append(escalation.escalate_overdue(other, POLICY, now))
        return real_move(session, ticket, step, at, **values)

    monkeypatch.setattr(escalation, "move", another_job_first)
    with transaction(sessions) as session:
        assert escalation.escalate_overdue(session, POLICY, now) == []
    assert other_job_ran == [[ticket_id]]
    with sessions() as session:
        assert session.get_one(Ticket, ticket_id).escalation_level == 1
    assert audited(sessions, "ticket.escalated") == 1


@on_postgresql
def test_on_postgresql_the_close_waits_for_the_operators_row_lock_and_then_loses(sessions):
    ticket_id = ticket_in(sessions, TicketState.RESOLVED, resolved_at=T0)
    now = T0 + timedelta(days=10)
    outcome: dict[str, object] = {}

    def close_job() -> None:
        with transaction(sessions) as session:
            outcome["closed"] = escalation.close_quiet(session, POLICY, now)

    with transaction(sessions) as operator:
        tickets.reopen(operator, ticket_id, "the company called back", "cli:sato", now)
        # The operator's transaction holds the row; the close job's UPDATE must wait for it.
        job = threading.Thread(target=close_job)
        job.start()
        job.join(timeout=1.0)
        assert job.is_alive(), "the close job did not wait for the operator's row lock"
    job.join(timeout=30)
    assert outcome["closed"] == []
    assert state_of(sessions, ticket_id) == TicketState.IN_PROGRESS
    assert audited(sessions, "ticket.reopened") == 1
    assert audited(sessions, "ticket.closed") == 0


@on_postgresql
def test_on_postgresql_an_operators_reopen_racing_an_automatic_reopen_one_wins(sessions):
    ticket_id = ticket_in(sessions, TicketState.RESOLVED, resolved_at=T0)
    now = T0 + timedelta(days=1)
    outcome: dict[str, object] = {}

    def operator_reopens() -> None:
        try:
            with transaction(sessions) as session:
                tickets.reopen(session, ticket_id, "checking again", "cli:sato", now)
            outcome["operator"] = "won"
        except TicketError as err:
            outcome["operator"] = str(err)

    with transaction(sessions) as triage:
        seen = triage.get_one(Ticket, ticket_id)
        states.move(triage, seen, "auto-reopen", now, resolved_at=None)
        operator = threading.Thread(target=operator_reopens)
        operator.start()
        operator.join(timeout=1.0)
        assert operator.is_alive(), "the operator's step did not wait for triage's row lock"
    operator.join(timeout=30)
    assert state_of(sessions, ticket_id) == TicketState.NEW
    assert "changed meanwhile (it is new now" in str(outcome["operator"])


def new_alert_of_incident_1(sessions: sessionmaker[Session], at: datetime) -> int:
    with transaction(sessions) as session:
        tenant_id = session.scalars(select(Ticket.tenant_id)).first()
        alert = Alert(
            tenant_id=tenant_id,
            source="defender",
            source_id="a2",
            incident_source_id="1",
            title="続報",
            severity="high",
            created_at=at,
        )
        session.add(alert)
        session.flush()
        return alert.id


@pytest.mark.parametrize(
    ("operator_step", "state_after", "tickets_after"),
    [
        ("reopen", TicketState.IN_PROGRESS, 1),  # taken back into work: the alert joins it
        ("close", TicketState.CLOSED, 2),  # closed: the group starts ticket #2
    ],
)
def test_an_alert_joining_a_ticket_an_operator_changed_meanwhile_respects_the_operator(
    sessions, monkeypatch, operator_step, state_after, tickets_after
):
    ticket_id = ticket_in(sessions, TicketState.RESOLVED, resolved_at=T0)
    now = T0 + timedelta(days=1)  # within reopen_days: the alert would reopen the ticket
    alert_id = new_alert_of_incident_1(sessions, now)
    real_move = intake.move

    def operator_first(session, ticket, step, at, **values):
        monkeypatch.setattr(intake, "move", real_move)
        with transaction(sessions) as other:
            if operator_step == "reopen":
                tickets.reopen(other, ticket_id, "checking again", "cli:sato", now)
            else:
                tickets.close(other, ticket_id, "cli:sato", now)
        return real_move(session, ticket, step, at, **values)

    monkeypatch.setattr(intake, "move", operator_first)
    with transaction(sessions) as session:
        alert = session.get_one(Alert, alert_id)
        book = intake.TicketBook(session, alert.tenant_id, [alert], POLICY, now)
        placed = book.place(alert, "P2")
        book.close()
        assert not placed.reopened
    with sessions() as session:
        assert session.get_one(Ticket, ticket_id).state == state_after
        assert len(session.scalars(select(Ticket)).all()) == tickets_after
        joined = session.get_one(Alert, alert_id).ticket_id
        assert (joined == ticket_id) is (tickets_after == 1)
    assert audited(sessions, "ticket.reopened") == (1 if operator_step == "reopen" else 0)
