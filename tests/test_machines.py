"""Each entity's transition table: a wrong step is refused with a clear message, and of two
writers that read the same state, the second one's step from that stale state loses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.base import ActionKind, ActionStatus
from edrtrial.db import transaction
from edrtrial.devices import actions
from edrtrial.devices.send import follow_actions
from edrtrial.devices.states import DEVICE_ACTIONS, OFFBOARDING, machine_for, reported, sent
from edrtrial.errors import TransientError, TransitionError
from edrtrial.ingest import health
from edrtrial.ingest.states import TENANTS
from edrtrial.machine import Machine
from edrtrial.models import AuditEvent, Device, OutboxMessage, ResponseAction, Tenant
from edrtrial.notify.states import OUTBOX
from edrtrial.states import ActionState, OutboxState, TenantState

from conftest import add_tenant
from fakes import FakeConnector

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _action(sessions: sessionmaker[Session], kind: str, status: str) -> int:
    tenant_id = add_tenant(sessions, "acme")
    with transaction(sessions) as session:
        device = Device(tenant_id=tenant_id, source_id="dev1", name="pc-1", in_inventory=True)
        session.add(device)
        session.flush()
        action = ResponseAction(
            dedupe_key=f"{kind}:1",
            tenant_id=tenant_id,
            device_id=device.id,
            kind=kind,
            status=status,
            source_action_id="ma-1",
        )
        session.add(action)
        session.flush()
        return action.id


def _tenant(sessions: sessionmaker[Session], state: str) -> int:
    tenant_id = add_tenant(sessions, "acme")
    with transaction(sessions) as session:
        session.get_one(Tenant, tenant_id).state = state  # the test sets the scene
    return tenant_id


def _message(sessions: sessionmaker[Session], status: str) -> int:
    with transaction(sessions) as session:
        msg = OutboxMessage(
            dedupe_key="k",
            kind="desk-notice",
            recipient="desk@example.jp",
            subject="s",
            body_text="b",
            status=status,
        )
        session.add(msg)
        session.flush()
        return msg.id


@dataclass(frozen=True)
class Case:
    """One machine: a row in a state, a step it refuses there, and a race between two steps."""

    machine: Machine[Any]
    make: Callable[[sessionmaker[Session], str], int]
    refused: tuple[str, str, str]  # state, step, message
    race: tuple[str, str, str]  # state both writers read, the winner's step, the loser's


CASES = {
    "device action": Case(
        DEVICE_ACTIONS,
        lambda s, state: _action(s, "isolate", state),
        ("pending", "claim", r"device action #\d+ is pending; claim needs it to be planned"),
        ("planned", "claim", "claim"),
    ),
    "offboarding task": Case(
        OFFBOARDING,
        lambda s, state: _action(s, "offboard", state),
        ("sending", "manual", r"offboarding task #\d+ is sending; manual needs it to be planned"),
        ("planned", "manual", "claim"),
    ),
    "tenant": Case(
        TENANTS,
        _tenant,
        ("parked", "fail", r"tenant #\d+ is parked; fail needs it to be active or failing"),
        ("active", "park", "succeed"),
    ),
    "outbox message": Case(
        OUTBOX,
        _message,
        ("sent", "retry", r"outbox message #\d+ is sent; retry needs it to be pending"),
        ("pending", "give_up", "sent"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_step_from_a_wrong_state_is_refused_and_says_what_it_needs(sessions, name):
    case = CASES[name]
    state, step, message = case.refused
    row_id = case.make(sessions, state)
    with transaction(sessions) as session:
        row = session.get_one(case.machine.model, row_id)
        with pytest.raises(TransitionError, match=message):
            case.machine.move(session, row, step)
        with pytest.raises(TransitionError, match=message):
            case.machine.move_id(session, row_id, state, step)
    with sessions() as session:
        assert getattr(session.get_one(case.machine.model, row_id), case.machine.column) == state


@pytest.mark.parametrize("name", list(CASES))
def test_of_two_writers_that_read_the_same_state_the_second_loses(sessions, name):
    case = CASES[name]
    state, winner, loser = case.race
    row_id = case.make(sessions, state)
    machine = case.machine
    with sessions() as first, sessions() as second:
        mine = first.get_one(machine.model, row_id)
        theirs = second.get_one(machine.model, row_id)
        assert getattr(theirs, machine.column) == state  # both read the same state
        assert machine.move(first, mine, winner)
        first.commit()
        assert not machine.move(second, theirs, loser)  # from the stale state: refused
        second.commit()
        won = machine.step(winner).target
        assert getattr(theirs, machine.column) == won  # and the loser now sees the winner's
    with sessions() as session:
        assert getattr(session.get_one(machine.model, row_id), machine.column) == won


def test_a_step_never_sets_the_state_column_itself(sessions):
    row_id = _message(sessions, "pending")
    with transaction(sessions) as session, pytest.raises(ValueError, match="sets status"):
        OUTBOX.move_id(session, row_id, "pending", "sent", status="failed")


def test_every_edr_status_is_a_state_with_a_step_from_sending_and_from_followed():
    for machine in (DEVICE_ACTIONS, OFFBOARDING):
        for status in ActionStatus:
            assert machine.step(sent(status)).target == status.value
            assert machine.can(sent(status), ActionState.SENDING)
            assert machine.can(reported(status), ActionState.PENDING)
            assert machine.can(reported(status), ActionState.IN_PROGRESS)
            assert not machine.can(reported(status), ActionState.SUCCEEDED)
    assert machine_for(ActionKind.OFFBOARD.value) is OFFBOARDING
    assert machine_for(ActionKind.ISOLATE.value) is DEVICE_ACTIONS


def test_a_refused_send_fails_an_isolation_but_puts_an_offboarding_back_to_planned():
    assert DEVICE_ACTIONS.step("refused").target is ActionState.FAILED
    assert OFFBOARDING.step("refused").target is ActionState.PLANNED
    assert "manual" not in DEVICE_ACTIONS.steps and "supersede" not in OFFBOARDING.steps


def test_a_stale_status_reading_never_overwrites_a_newer_one(sessions):
    """Two followers read `pending`; the one that saw `succeeded` wins, the slower one that
    saw `inprogress` must not move the finished action back (nor finish it twice)."""
    action_id = _action(sessions, "isolate", "pending")
    with sessions() as session:
        tenant_id = session.get_one(ResponseAction, action_id).tenant_id
    finished: list[int] = []

    class Slow(FakeConnector):
        def action_status(self, source_action_id):
            # Meanwhile, the other follower read `succeeded` and recorded it.
            fast = FakeConnector()
            follow_actions(
                sessions, DEVICE_ACTIONS, tenant_id, fast, ["isolate"], T0, lambda s, a: None
            )
            self.statuses[source_action_id] = ActionStatus.IN_PROGRESS
            return super().action_status(source_action_id)

    changed, done = follow_actions(
        sessions,
        DEVICE_ACTIONS,
        tenant_id,
        Slow(),
        ["isolate"],
        T0,
        lambda s, a: finished.append(a.id),
    )
    assert (changed, done, finished) == (0, [], [])
    with sessions() as session:
        assert session.get_one(ResponseAction, action_id).status == "succeeded"


def test_a_proposal_is_superseded_by_the_machine(sessions):
    action_id = _action(sessions, "isolate", "proposed")
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        planned = actions.plan(session, device, ActionKind.ISOLATE, actor="cli:a", at=T0)
    with sessions() as session:
        statuses = {a.id: a.status for a in session.scalars(select(ResponseAction))}
    assert statuses == {action_id: "superseded", planned.id: "planned"}


def test_a_poll_that_succeeds_after_another_job_parked_the_tenant_leaves_it_parked(sessions):
    tenant_id = _tenant(sessions, "active")
    health.park(sessions, tenant_id, "AADSTS7000215: invalid client secret", T0)
    health.succeeded(sessions, tenant_id, T0 + timedelta(seconds=5))
    health.failed(sessions, tenant_id, TransientError("503"), T0 + timedelta(seconds=6), 60)
    with sessions() as session:
        tenant = session.get_one(Tenant, tenant_id)
        assert (tenant.state, tenant.state_reason, tenant.failures) == (
            TenantState.PARKED,
            "AADSTS7000215: invalid client secret",
            0,
        )


def test_resuming_a_tenant_is_a_step_and_is_audited(sessions):
    tenant_id = _tenant(sessions, "parked")
    with transaction(sessions) as session:
        health.resume_tenant(session, "acme", "cli:sato", T0)
    with sessions() as session:
        assert session.get_one(Tenant, tenant_id).state == TenantState.ACTIVE
        [event] = session.scalars(select(AuditEvent)).all()
        assert (event.action, event.detail["was"]) == ("tenant.resumed", "parked")


def test_an_outbox_message_given_up_is_not_sent_by_a_stale_deliverer(sessions):
    row_id = _message(sessions, "pending")
    with transaction(sessions) as session:
        assert OUTBOX.move_id(session, row_id, OutboxState.PENDING, "give_up", attempts=5)
    with transaction(sessions) as session:
        assert not OUTBOX.move_id(session, row_id, OutboxState.PENDING, "take")
