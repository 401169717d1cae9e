"""One request, at most one action: a send without an answer is looked for at the EDR before it
is settled, and offboarding is followed until the device has really gone quiet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_jobs import install

from edrtrial.config import DeskConfig, load_config
from edrtrial.connectors.base import (
    ActionKind,
    ActionResult,
    ActionStatus,
    Batch,
    Capability,
    DeviceRecord,
    Rejected,
)
from edrtrial.db import transaction
from edrtrial.devices import actions as responses
from edrtrial.devices import offboarding, settle
from edrtrial.errors import ActionRefused, ApiRefused, OutcomeUnknown, ResourceNotFound
from edrtrial.ingest import polling, records
from edrtrial.models import AuditEvent, Device, OutboxMessage, ResponseAction, Tenant, Ticket, Trial
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import Stamp

from conftest import add_tenant
from fakes import Crash, FakeConnector, HandClock
from sandbox_config import settings, write_config

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 10:00 JST
WINDOW = timedelta(minutes=10)
DESK = DeskConfig(name="デスク", email="desk@example.jp")
NO_ANSWER = {
    "504": OutcomeUnknown("POST /api/machines/dev1/isolate answered 504 GatewayTimeout"),
    "timeout": OutcomeUnknown("POST /api/machines/dev1/isolate timed out"),
    "dropped": OutcomeUnknown("POST /api/machines/dev1/isolate failed: RemoteProtocolError"),
}


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> int:
    tid = add_tenant(sessions, "acme", "株式会社アクメ")
    with transaction(sessions) as session:
        company_id = session.get_one(Tenant, tid).company_id
        session.add(
            Trial(company_id=company_id, starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30))
        )
        session.add(
            Device(
                tenant_id=tid,
                source_id="dev1",
                name="pc-1",
                os_platform="Windows11",
                in_inventory=True,
                health_status="Active",
                last_seen=T0 - timedelta(hours=1),
            )
        )
    return tid


def edr(at: datetime = T0) -> FakeConnector:
    connector = FakeConnector(tenant_id="t-acme")
    connector.clock = lambda: at
    return connector


def plan_isolation(sessions, actor: str = "cli:sato") -> int:
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        return responses.plan(session, device, ActionKind.ISOLATE, actor=actor, at=T0).id


def action(sessions, action_id: int) -> ResponseAction:
    with sessions() as session:
        return session.get_one(ResponseAction, action_id)


def audit_trail(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (e.actor, e.action)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.action.split(".")[0] in ("isolate", "offboarding")
        ]


def isolated(sessions) -> bool:
    with sessions() as session:
        return responses.device_state(session, session.scalars(select(Device)).one()).isolated


def plan_again(sessions) -> None:
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        responses.plan(session, device, ActionKind.ISOLATE, actor="cli:suzuki", at=T0)


@pytest.mark.parametrize("answer", list(NO_ANSWER))
def test_a_send_without_an_answer_adopts_the_action_the_edr_created(sessions, tenant_id, answer):
    connector = edr()
    connector.fault = NO_ANSWER[answer]  # Microsoft created the isolation, then the answer was lost
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0)

    assert len(connector.actions) == 1  # one request, one machine action
    assert (sent.status, sent.source_action_id) == ("pending", "action-1")
    assert "found at the EDR" in sent.detail
    with pytest.raises(ActionRefused, match="already under way"):
        plan_again(sessions)  # the operator's retry is refused while it is under way
    responses.follow(sessions, tenant_id, connector, DESK, T0 + timedelta(minutes=1))
    assert isolated(sessions)
    assert len(connector.started) == 1
    assert audit_trail(sessions) == [
        ("cli:sato", "isolate.planned"),
        ("cli:sato", "isolate.sending"),
        ("cli:sato", "isolate.sent"),
        ("edr", "isolate.succeeded"),
    ]


def test_no_action_at_the_edr_waits_unconfirmed_and_fails_only_after_the_window(
    sessions, tenant_id
):
    connector = edr()
    connector.fault, connector.fault_records = NO_ANSWER["504"], False
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert sent.status == "unconfirmed"
    assert "looking for it at the EDR until 11/24 10:10 JST" in sent.detail
    with pytest.raises(ActionRefused, match="already under way .*unconfirmed"):
        plan_again(sessions)
    almost = T0 + WINDOW - timedelta(seconds=1)
    responses.reconcile(sessions, tenant_id, connector, lambda: almost, WINDOW)
    assert action(sessions, action_id).status == "unconfirmed"

    responses.reconcile(sessions, tenant_id, connector, lambda: T0 + WINDOW, WINDOW)

    assert action(sessions, action_id).status == "failed"
    assert connector.actions == [] and len(connector.started) == 1
    assert audit_trail(sessions) == [
        ("cli:sato", "isolate.planned"),
        ("cli:sato", "isolate.sending"),
        ("cli:sato", "isolate.unconfirmed"),
        ("edr", "isolate.lost"),
    ]
    plan_again(sessions)  # nothing was created: the operator may now try again


def test_an_action_that_appears_late_at_the_edr_is_adopted_by_the_next_look(sessions, tenant_id):
    connector = edr()
    connector.fault, connector.fault_records = NO_ANSWER["timeout"], False
    action_id = plan_isolation(sessions)
    responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)
    # Microsoft lists the action a little later (its clock a minute behind ours).
    late = ActionResult("mde-42", ActionStatus.IN_PROGRESS, created_at=T0 - timedelta(minutes=1))
    connector.actions.append(("dev1", ActionKind.ISOLATE, late))

    responses.reconcile(sessions, tenant_id, connector, lambda: T0 + timedelta(minutes=3), WINDOW)

    found = action(sessions, action_id)
    assert (found.status, found.source_action_id) == ("inprogress", "mde-42")
    assert audit_trail(sessions)[-1] == ("edr", "isolate.sent")


def test_an_edr_clock_minutes_behind_still_gives_one_action(sessions, tenant_id):
    """Microsoft stamps the action 3 minutes "before" our claim: the marker in its comment
    still tells it is this send's, so the operator's retry is refused, not sent again."""
    connector = edr(T0 - timedelta(minutes=3))
    connector.fault = NO_ANSWER["504"]
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert (sent.status, sent.source_action_id) == ("pending", "action-1")
    with pytest.raises(ActionRefused, match="already under way"):
        plan_again(sessions)
    assert len(connector.started) == 1


def test_an_action_marked_for_another_send_is_never_adopted(sessions, tenant_id):
    """An isolation at the EDR whose comment names another send (another row's, whose own
    answer was lost too) is not this one's, however close in time."""
    connector = edr()
    connector.fault, connector.fault_records = NO_ANSWER["timeout"], False
    action_id = plan_isolation(sessions)
    stranger = ActionResult(
        "mde-9",
        ActionStatus.PENDING,
        created_at=T0,
        comment="edrtrial: isolate pc-1 (x, action #99)",
    )
    connector.actions.append(("dev1", ActionKind.ISOLATE, stranger))

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert sent.status == "unconfirmed"


def test_an_older_action_of_the_device_is_never_adopted(sessions, tenant_id):
    connector = edr()
    first = plan_isolation(sessions)
    responses.send(sessions, first, connector, "cli:sato", lambda: T0)
    responses.follow(sessions, tenant_id, connector, DESK, T0)
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        release = responses.plan(session, device, ActionKind.RELEASE, actor="cli:sato", at=T0).id
    connector.fault, connector.fault_records = NO_ANSWER["504"], False

    sent = responses.send(sessions, release, connector, "cli:sato", lambda: T0, WINDOW)

    assert sent.status == "unconfirmed"  # the isolation held by the first row is not its answer
    assert isolated(sessions)


def test_a_refusal_is_settled_at_once_without_looking(sessions, tenant_id):
    connector = edr()
    connector.fault, connector.fault_records = (
        ApiRefused("Action is already in progress", status=400),
        False,
    )
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert sent.status == "failed" and "the EDR refused" in sent.detail


def test_a_connector_that_cannot_list_actions_is_never_assumed_to_have_created_nothing(
    sessions, tenant_id
):
    connector = Blind(tenant_id="t-acme")
    connector.fault, connector.fault_records = NO_ANSWER["504"], False
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)
    responses.reconcile(sessions, tenant_id, connector, lambda: T0 + timedelta(days=1), WINDOW)

    assert action(sessions, action_id).status == "unconfirmed"
    assert "check the device in its console" in sent.detail


class Blind(FakeConnector):
    """An EDR that cannot list its actions (CyCraft); it knows only the ids it handed out."""

    capabilities = FakeConnector.capabilities - {Capability.FIND_ACTIONS}

    def action_status(self, source_action_id: str) -> ActionResult:
        if source_action_id not in {a.source_action_id for _, _, a in self.actions}:
            raise ResourceNotFound(f"GET /tasks/{source_action_id} answered 404", status=404)
        return super().action_status(source_action_id)


def test_the_operator_settles_an_unanswered_send_by_what_the_console_shows(sessions, tenant_id):
    """Only a person who looked in the EDR's console can end the wait of an EDR that cannot
    list its actions: a mistyped id is refused, the right one is adopted and followed."""
    connector = Blind(tenant_id="t-acme")
    connector.fault = NO_ANSWER["504"]  # CyCraft created task action-1; the answer was lost
    action_id = plan_isolation(sessions)
    responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    with pytest.raises(ActionRefused, match="does not show action action-9"):
        settle.settle(
            sessions, action_id, connector, found="action-9", actor="cli:sato", at=T0, desk=DESK
        )
    done = settle.settle(
        sessions, action_id, connector, found="action-1", actor="cli:sato", at=T0, desk=DESK
    )

    assert (done.status, done.source_action_id) == ("succeeded", "action-1")
    assert isolated(sessions)
    assert audit_trail(sessions)[-2:] == [
        ("cli:sato", "isolate.sent"),
        ("edr", "isolate.succeeded"),
    ]
    with pytest.raises(ActionRefused, match="nothing to settle"):
        settle.settle(
            sessions, action_id, connector, found=None, actor="cli:sato", at=T0, desk=DESK
        )


def test_an_edr_action_already_held_by_another_row_cannot_be_claimed_again(sessions, tenant_id):
    connector = Blind(tenant_id="t-acme")
    first = plan_isolation(sessions)
    responses.send(sessions, first, connector, "cli:sato", lambda: T0, WINDOW)  # action-1
    responses.follow(sessions, tenant_id, connector, DESK, T0)
    release = plan_release(sessions)
    connector.fault = NO_ANSWER["timeout"]
    responses.send(sessions, release, connector, "cli:sato", lambda: T0, WINDOW)

    with pytest.raises(ActionRefused, match="already action #"):
        settle.settle(
            sessions, release, connector, found="action-1", actor="cli:sato", at=T0, desk=DESK
        )
    lost = settle.settle(
        sessions, release, connector, found=None, actor="cli:sato", at=T0, desk=DESK
    )
    assert lost.status == "failed" and "checked in the EDR's console by cli:sato" in lost.detail


def plan_release(sessions) -> int:
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        return responses.plan(session, device, ActionKind.RELEASE, actor="cli:sato", at=T0).id


# -- offboarding --------------------------------------------------------------------------------


def trial_over(sessions, tenant_id: int, ended: date) -> None:
    """The company's trial ended on `ended` without a decision to continue."""
    with transaction(sessions) as session:
        company_id = session.get_one(Tenant, tenant_id).company_id
        trial = session.scalars(select(Trial).where(Trial.company_id == company_id)).one()
        trial.ends_on, trial.decision = ended, "offboard"


def plan_offboarding(sessions, tenant_id: int) -> int:
    trial_over(sessions, tenant_id, date(2026, 11, 20))  # offboarding is sent only after it
    with transaction(sessions) as session:
        [task] = offboarding.plan_offboarding(session, date(2026, 11, 21), T0)
        return task.id


def test_an_offboarding_answered_5xx_after_the_edr_recorded_it_is_one_offboard(sessions, tenant_id):
    connector = edr()
    connector.fault = OutcomeUnknown("POST /api/machines/dev1/offboard answered 503")
    task_id = plan_offboarding(sessions, tenant_id)

    settled = offboarding.execute_offboarding(
        sessions, tenant_id, connector, "cli:sato", lambda: T0
    )
    connector.fault = None
    # The operator runs the command again: nothing is planned, so nothing is sent.
    offboarding.execute_offboarding(sessions, tenant_id, connector, "cli:sato", lambda: T0)

    assert settled == [task_id]
    assert [kind for _, kind, _ in connector.actions] == [ActionKind.OFFBOARD]
    assert len(connector.started) == 1
    task = action(sessions, task_id)
    assert (task.status, task.source_action_id) == ("pending", "action-1")


def test_an_unanswered_offboarding_goes_back_to_planned_only_after_the_window(sessions, tenant_id):
    connector = edr()
    connector.fault, connector.fault_records = OutcomeUnknown("timed out"), False
    task_id = plan_offboarding(sessions, tenant_id)
    offboarding.execute_offboarding(sessions, tenant_id, connector, "cli:sato", lambda: T0, WINDOW)
    assert action(sessions, task_id).status == "unconfirmed"
    offboarding.execute_offboarding(sessions, tenant_id, connector, "cli:sato", lambda: T0, WINDOW)
    assert len(connector.started) == 1  # not planned, so not sent again

    offboarding.reconcile_offboarding(sessions, tenant_id, connector, lambda: T0 + WINDOW, WINDOW)

    task = action(sessions, task_id)
    assert task.status == "planned" and "no Offboard action appeared" in task.detail


def succeeded_offboarding(sessions, tenant_id: int) -> tuple[int, FakeConnector]:
    connector = edr()
    task_id = plan_offboarding(sessions, tenant_id)
    offboarding.execute_offboarding(sessions, tenant_id, connector, "cli:sato", lambda: T0)
    offboarding.refresh_offboarding(sessions, tenant_id, connector, T0 + timedelta(minutes=5))
    assert action(sessions, task_id).status == "succeeded"
    return task_id, connector


def inventory_says(sessions, at: datetime, **values) -> None:
    """An inventory read at `at` says this of the device."""
    with transaction(sessions) as session:
        device = session.scalars(select(Device)).one()
        for key, value in values.items():
            setattr(device, key, value)
        records.mark_read(session, device.tenant_id, records.INVENTORY_STREAM, Stamp.of(at))


FLAG_AFTER = timedelta(days=3)


def test_an_offboarded_device_that_goes_inactive_is_verified(sessions, tenant_id):
    task_id, _ = succeeded_offboarding(sessions, tenant_id)
    later = T0 + timedelta(hours=2)
    assert offboarding.verify_offboarding(sessions, tenant_id, later, FLAG_AFTER) == ([], [])
    inventory_says(sessions, later, health_status="Inactive")

    verified, flagged = offboarding.verify_offboarding(sessions, tenant_id, later, FLAG_AFTER)

    assert (verified, flagged) == ([task_id], [])
    assert action(sessions, task_id).status == "verified"
    assert audit_trail(sessions)[-1] == ("edr", "offboarding.verified")


def test_an_offboarded_device_whose_last_report_stays_frozen_is_verified_a_day_on(
    sessions, tenant_id
):
    task_id, _ = succeeded_offboarding(sessions, tenant_id)
    day = timedelta(days=1)
    inventory_says(sessions, T0 + timedelta(hours=12))  # last seen before the offboarding
    offboarding.verify_offboarding(sessions, tenant_id, T0 + timedelta(hours=12), FLAG_AFTER)
    assert action(sessions, task_id).status == "succeeded"  # too early to tell

    inventory_says(sessions, T0 + day)
    offboarding.verify_offboarding(sessions, tenant_id, T0 + day + timedelta(minutes=5), FLAG_AFTER)

    assert action(sessions, task_id).status == "verified"


def test_a_device_still_reporting_days_after_offboarding_is_flagged_once(sessions, tenant_id):
    task_id, _ = succeeded_offboarding(sessions, tenant_id)
    inventory_says(sessions, T0 + timedelta(days=2), last_seen=T0 + timedelta(days=2))
    offboarding.verify_offboarding(sessions, tenant_id, T0 + timedelta(days=2), FLAG_AFTER)
    assert action(sessions, task_id).status == "succeeded"

    for hours in (0, 1, 24):
        at = T0 + FLAG_AFTER + timedelta(minutes=5, hours=hours)
        offboarding.verify_offboarding(sessions, tenant_id, at, FLAG_AFTER)

    with sessions() as session:
        [row] = offboarding.offboarding_progress(session, "acme")
    assert row.status == "still_reporting"
    assert "still reporting 3 days after the EDR offboarded it" in row.detail
    assert audit_trail(sessions).count(("edr", "offboarding.still_reporting")) == 1
    inventory_says(sessions, T0 + timedelta(days=5), health_status="Inactive")  # script run
    offboarding.verify_offboarding(sessions, tenant_id, T0 + timedelta(days=5), FLAG_AFTER)
    assert action(sessions, task_id).status == "verified"


def test_an_offboarding_is_not_verified_from_an_inventory_read_before_it_succeeded(
    sessions, tenant_id
):
    """pc-1 was off for a week (the last inventory says Inactive), came back, took the
    Offboard; whether the sensor really left, only a later inventory can tell."""
    inventory_says(
        sessions,
        T0 - timedelta(hours=1),
        health_status="Inactive",
        last_seen=T0 - timedelta(days=7),
    )
    task_id, _ = succeeded_offboarding(sessions, tenant_id)

    offboarding.verify_offboarding(sessions, tenant_id, T0 + timedelta(minutes=6), FLAG_AFTER)
    assert action(sessions, task_id).status == "succeeded"

    inventory_says(sessions, T0 + FLAG_AFTER, health_status="Active", last_seen=T0 + FLAG_AFTER)
    later = T0 + FLAG_AFTER + timedelta(hours=1)
    offboarding.verify_offboarding(sessions, tenant_id, later, FLAG_AFTER)
    assert action(sessions, task_id).status == "still_reporting"


# -- the desk job --------------------------------------------------------------------------------


class CrashAfterSending(FakeConnector):
    """Microsoft creates the action, then the process dies before the answer is recorded."""

    def start_action(self, device_source_id, kind, comment):
        super().start_action(device_source_id, kind, comment)
        raise Crash("killed mid-send")


def desk_tenant(rt) -> tuple[int, FakeConnector]:
    [tenant] = rt.tenants("sakura-seisakusho")
    connector = CrashAfterSending(tenant_id=tenant.external_id)
    install(rt, "sakura-seisakusho", connector)
    with transaction(rt.sessions) as session:
        session.add(
            Device(
                tenant_id=tenant.id,
                source_id="dev1",
                name="pc-1",
                os_platform="Windows11",
                in_inventory=True,
            )
        )
    return tenant.id, connector


@pytest.fixture
def runtime(tmp_path, now, engine, database_url):
    """The service's runtime over the sample programme, its clock moved by hand."""
    path = write_config(tmp_path / "config.toml", settings(database_url))
    clock = HandClock(now)
    rt = Runtime.open(load_config(path), clock=clock)
    yield rt, clock
    rt.close()


def test_an_action_a_crash_left_sending_is_reconciled_by_the_desk_job(runtime):
    rt, clock = runtime
    tenant_id, connector = desk_tenant(rt)
    connector.clock = lambda: clock.now
    with transaction(rt.sessions) as session:
        device = session.scalars(select(Device).where(Device.tenant_id == tenant_id)).one()
        action_id = responses.plan(
            session, device, ActionKind.ISOLATE, actor="cli:sato", at=clock.now
        ).id
    with pytest.raises(Crash):
        responses.send(rt.sessions, action_id, connector, "cli:sato", clock)
    assert action(rt.sessions, action_id).status == "sending"

    clock.now += timedelta(minutes=1)  # a send may still be under way: left alone
    jobs.desk(rt)
    assert action(rt.sessions, action_id).status == "sending"
    clock.now += timedelta(minutes=5)
    jobs.desk(rt)

    done = action(rt.sessions, action_id)
    assert (done.status, done.source_action_id) == ("succeeded", "action-1")
    assert len(connector.actions) == 1 and len(connector.started) == 1
    assert ("edr", "isolate.sent") in audit_trail(rt.sessions)
    assert isolated(rt.sessions)


def test_the_desk_job_follows_sent_offboarding_and_verifies_it(runtime):
    rt, clock = runtime
    tenant_id, _ = desk_tenant(rt)
    connector = FakeConnector(tenant_id=rt.tenants("sakura-seisakusho")[0].external_id)
    install(rt, "sakura-seisakusho", connector)
    trial_over(rt.sessions, tenant_id, clock.now.date() - timedelta(days=2))
    with transaction(rt.sessions) as session:
        task = ResponseAction(
            dedupe_key=offboarding.offboard_key(tenant_id, "dev1"),
            tenant_id=tenant_id,
            device_id=session.scalars(select(Device.id).where(Device.tenant_id == tenant_id)).one(),
            kind=ActionKind.OFFBOARD.value,
            status="planned",
            requested_by="trial-lifecycle",
            created_at=clock.now,
            updated_at=clock.now,
        )
        session.add(task)
        session.flush()
        task_id = task.id
    offboarding.execute_offboarding(rt.sessions, tenant_id, connector, "cli:sato", clock)
    assert action(rt.sessions, task_id).status == "pending"

    jobs.desk(rt)
    assert action(rt.sessions, task_id).status == "succeeded"  # no inventory run needed
    clock.now += timedelta(minutes=30)  # the next inventory
    inventory_says(rt.sessions, clock.now, health_status="Inactive")
    jobs.desk(rt)

    assert action(rt.sessions, task_id).status == "verified"


class FinishedWhileDown(CrashAfterSending):
    """The process died mid-send; by the time anyone looks, Microsoft has isolated the PC."""

    def find_actions(self, device_source_id, kind, since, marker=""):
        return [
            replace(action, status=ActionStatus.SUCCEEDED)
            for action in super().find_actions(device_source_id, kind, since, marker)
        ]


def test_an_action_found_already_finished_is_told_to_the_company_once(runtime):
    """Following never sees an action that is already final, so adopting one must do what
    following would: audit the EDR's outcome and mail the company that its PC is isolated."""
    rt, clock = runtime
    tenant_id, _ = desk_tenant(rt)
    connector = FinishedWhileDown(tenant_id=rt.tenants("sakura-seisakusho")[0].external_id)
    connector.clock = lambda: clock.now
    install(rt, "sakura-seisakusho", connector)
    with transaction(rt.sessions) as session:
        device = session.scalars(select(Device).where(Device.tenant_id == tenant_id)).one()
        ticket = Ticket(
            tenant_id=tenant_id, correlation_key="k", title="ランサムウェア", priority="P1"
        )
        session.add(ticket)
        session.flush()
        action_id = responses.plan(
            session, device, ActionKind.ISOLATE, actor="cli:sato", at=clock.now, ticket=ticket
        ).id
    with pytest.raises(Crash):
        responses.send(rt.sessions, action_id, connector, "cli:sato", clock)

    clock.now += timedelta(minutes=6)
    jobs.desk(rt)
    jobs.desk(rt)  # a second look changes nothing and mails no one twice

    assert action(rt.sessions, action_id).status == "succeeded"
    assert isolated(rt.sessions)
    assert audit_trail(rt.sessions)[-2:] == [("edr", "isolate.sent"), ("edr", "isolate.succeeded")]
    with rt.sessions() as session:
        notices = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "isolation-notice")
        ).all()
    assert len(notices) == 1


def test_a_reconciler_that_lost_the_race_writes_no_contradicting_audit(sessions, tenant_id):
    """`serve`'s desk job and a hand-run `run-job desk` look at once: the one whose list was
    read just before the action appeared must not audit "lost" after the other adopted it."""
    connector = edr()
    connector.fault, connector.fault_records = NO_ANSWER["504"], False
    action_id = plan_isolation(sessions)
    responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)
    late = ActionResult(
        "mde-42", ActionStatus.PENDING, created_at=T0, comment=f"x (cli:sato, action #{action_id})"
    )
    listing = connector.find_actions
    calls: list[int] = []

    def find_actions(device, kind, since, marker=""):
        calls.append(1)
        if len(calls) == 1:  # the first reader's list is taken just before the action appears
            connector.actions.append(("dev1", ActionKind.ISOLATE, late))
            responses.reconcile(sessions, tenant_id, connector, lambda: T0 + WINDOW, WINDOW)
            return []
        return listing(device, kind, since, marker)

    connector.find_actions = find_actions
    responses.reconcile(sessions, tenant_id, connector, lambda: T0 + WINDOW, WINDOW)

    assert (action(sessions, action_id).status, action(sessions, action_id).source_action_id) == (
        "pending",
        "mde-42",
    )
    trail = audit_trail(sessions)
    assert ("edr", "isolate.lost") not in trail and trail.count(("edr", "isolate.sent")) == 1


def test_an_operators_isolation_left_planned_is_sent_by_the_desk_not_the_playbook(runtime):
    """`ticket isolate` committed the plan and died before sending; the desk job sends it.
    Nobody agreed to automatic isolation: the audit must not say the playbook did it."""
    rt, clock = runtime
    tenant_id, _ = desk_tenant(rt)
    connector = FakeConnector(tenant_id=rt.tenants("sakura-seisakusho")[0].external_id)
    connector.clock = lambda: clock.now
    install(rt, "sakura-seisakusho", connector)
    with transaction(rt.sessions) as session:
        device = session.scalars(select(Device).where(Device.tenant_id == tenant_id)).one()
        responses.plan(session, device, ActionKind.ISOLATE, actor="cli:sato", at=clock.now)

    jobs.desk(rt)

    with rt.sessions() as session:
        sending = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "isolate.sending")
        ).one()
    assert (sending.actor, sending.detail["requested_by"]) == ("desk", "cli:sato")
    assert len(connector.started) == 1


# -- what tells a send's own action from any other ----------------------------------------------


def rename_device(sessions, name: str) -> None:
    with transaction(sessions) as session:
        session.scalars(select(Device)).one().name = name


def test_a_device_named_like_a_marker_still_gets_its_own_action_adopted(sessions, tenant_id):
    """The comment starts with the device's name, which the EDR's users choose: only the
    marker at the comment's end counts."""
    rename_device(sessions, "kiosk action #99")
    connector = edr()
    connector.fault = NO_ANSWER["504"]
    action_id = plan_isolation(sessions)

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert (sent.status, sent.source_action_id) == ("pending", "action-1")


def test_another_stores_action_with_the_same_number_is_not_adopted(sessions, tenant_id):
    """A staging store sharing the app registration numbers its actions the same way: its
    isolation #N of the same PC, hours ago, is not this send's."""
    connector = edr()
    connector.fault, connector.fault_records = NO_ANSWER["504"], False  # nothing created
    action_id = plan_isolation(sessions)
    staging = ActionResult(
        "staging-7",
        ActionStatus.SUCCEEDED,
        created_at=T0 - timedelta(hours=20),
        comment=f"edrtrial: isolate pc-1 (cli:tanaka, action #{action_id}/0a1b2c)",
    )
    connector.actions.append(("dev1", ActionKind.ISOLATE, staging))

    sent = responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    assert (sent.status, sent.source_action_id) == ("unconfirmed", None)
    assert not isolated(sessions)


def test_settle_refuses_a_send_still_under_way(sessions, tenant_id):
    """An operator sees a fresh `sending` row in `action list` while its POST is in flight:
    settling it then would let the answer arrive too late and the task be sent again."""
    connector = edr()
    task_id = plan_offboarding(sessions, tenant_id)
    refusals: list[str] = []
    start = connector.start_action

    def start_action(device_source_id, kind, comment):
        try:
            settle.settle(
                sessions, task_id, connector, found=None, actor="cli:suzuki", at=T0, desk=DESK
            )
        except ActionRefused as err:
            refusals.append(str(err))
        return start(device_source_id, kind, comment)

    connector.start_action = start_action
    offboarding.execute_offboarding(sessions, tenant_id, connector, "cli:sato", lambda: T0)

    assert refusals == [f"action #{task_id} is being sent right now: wait for the EDR's answer"]
    assert action(sessions, task_id).source_action_id == "action-1"
    with sessions() as session:
        [row] = settle.unanswered(session, T0) or [None]
    assert row is None  # answered: nothing left to settle


class Console(Blind):
    """The EDR's console shows which machine and type each action is (as Defender does)."""

    def action_status(self, source_action_id: str) -> ActionResult:
        return ActionResult(
            source_action_id,
            ActionStatus.SUCCEEDED,
            device_source_id="dev2",
            kind=ActionKind.RELEASE,
        )


def test_settle_refuses_an_action_of_another_device_or_kind(sessions, tenant_id):
    """A neighbouring row copied from the console (pc-2's release) must not settle pc-1's
    isolation as done, or the company is told its PC is isolated when it is not."""
    connector = Console(tenant_id="t-acme")
    connector.fault, connector.fault_records = NO_ANSWER["504"], False
    action_id = plan_isolation(sessions)
    responses.send(sessions, action_id, connector, "cli:sato", lambda: T0, WINDOW)

    with pytest.raises(ActionRefused, match="acts on another device"):
        settle.settle(
            sessions, action_id, connector, found="mde-77", actor="cli:sato", at=T0, desk=DESK
        )
    assert not isolated(sessions)


def inventory(sessions, tenant_id: int, at: datetime, batch) -> None:
    connector = FakeConnector(tenant_id="t-acme")
    connector.fetch_devices = lambda: batch
    polling.sync_inventory(sessions, tenant_id, connector, at)


def test_a_clock_once_ahead_does_not_verify_offboarding_without_a_later_inventory(
    sessions, tenant_id
):
    inactive = DeviceRecord(
        "dev1", "pc-1", "Windows11", health_status="Inactive", last_seen=Stamp.of(T0)
    )
    inventory(sessions, tenant_id, T0 + timedelta(days=365), Batch([inactive]))
    task_id, _ = succeeded_offboarding(sessions, tenant_id)  # the host clock is right again

    offboarding.verify_offboarding(sessions, tenant_id, T0 + timedelta(minutes=6), FLAG_AFTER)

    assert action(sessions, task_id).status == "succeeded"


def test_an_inventory_that_could_not_read_every_device_does_not_verify(sessions, tenant_id):
    task_id, _ = succeeded_offboarding(sessions, tenant_id)
    unreadable = Rejected("device", "dev1", "lastSeen out of range", {"id": "dev1"})
    for hours in (1, 12, 24):
        inventory(sessions, tenant_id, T0 + timedelta(hours=hours), Batch([], [unreadable]))

    day_on = T0 + timedelta(days=1, minutes=5)
    offboarding.verify_offboarding(sessions, tenant_id, day_on, FLAG_AFTER)

    assert action(sessions, task_id).status == "succeeded"
