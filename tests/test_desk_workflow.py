"""The desk's workflow: ticket states, reopening, escalation, isolation and write-back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import ChannelConfig, DeskConfig
from edrtrial.connectors.base import ActionKind, ActionStatus, AlertUpdate, Capability
from edrtrial.db import transaction
from edrtrial.desk import escalation, operator
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.triage import triage_pending
from edrtrial.devices import actions as responses
from edrtrial.devices import writeback
from edrtrial.errors import ActionRefused, ApiRefused
from edrtrial.models import (
    Alert,
    AuditEvent,
    Company,
    Device,
    OutboxMessage,
    ResponseAction,
    Tenant,
    Ticket,
    Trial,
)
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks

from conftest import add_tenant
from fakes import FakeConnector

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # Tuesday 10:00 JST
PLAYBOOK = load_playbooks(default_playbook_paths())
CHANNELS = [
    ChannelConfig(name="desk", kind="mail", to="desk@example.jp"),
    ChannelConfig(name="duty", kind="mail", to="duty@example.jp"),
    ChannelConfig(name="manager", kind="mail", to="manager@example.jp"),
]
POLICY = DeskPolicy(DeskConfig(name="デスク", email="desk@example.jp", channels=CHANNELS))
SUMMARY = {
    "when": "11/24 10:00",
    "what": "不審なPowerShell",
    "cause": "添付ファイルの実行",
    "handling": "端末を隔離",
    "effect": "拡大なし",
}


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> int:
    tid = add_tenant(sessions, "acme", "株式会社アクメ")
    with transaction(sessions) as session:
        company_id = session.get_one(Tenant, tid).company_id
        session.add(
            Trial(company_id=company_id, starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30))
        )
    return tid


def add_alert(sessions, tenant_id: int, n: int, **fields) -> int:
    base = dict(
        source="defender",
        source_id=f"a{n}",
        title=f"alert {n}",
        severity="high",
        status="new",
        category="Execution",
        incident_source_id="inc-1",
        mitre_techniques=["T1059.001"],
        device_source_ids=["dev1"],
        device_names=["pc-1"],
        created_at=T0 + timedelta(minutes=n),
        last_update_at=T0 + timedelta(minutes=n),
    )
    base.update(fields)
    with transaction(sessions) as session:
        alert = Alert(tenant_id=tenant_id, **base)
        session.add(alert)
        session.flush()
        return alert.id


def triage(sessions, tenant_id: int, at: datetime = T0 + timedelta(hours=1)):
    with transaction(sessions) as session:
        return triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, at)


def only_ticket(sessions) -> Ticket:
    with sessions() as session:
        return session.scalars(select(Ticket)).one()


def outbox(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (m.kind, m.recipient)
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]


def audit_actions(sessions, actor: str) -> list[str]:
    with sessions() as session:
        return [
            e.action
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.actor == actor).order_by(AuditEvent.id)
            )
        ]


def act(sessions, step, *args):
    with transaction(sessions) as session:
        return step(session, *args)


def test_a_ticket_goes_new_acknowledged_in_progress_resolved_closed_and_each_step_is_audited(
    sessions, tenant_id
):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    at = T0 + timedelta(hours=2)
    act(sessions, operator.acknowledge, tid, "cli:sato", at)
    with pytest.raises(
        operator.TicketError, match="is acknowledged; acknowledge needs it to be new"
    ):
        act(sessions, operator.acknowledge, tid, "cli:suzuki", at)
    act(sessions, operator.assign, tid, "tanaka", "cli:sato", at)
    act(sessions, operator.start, tid, "cli:tanaka", at)
    act(sessions, operator.note, tid, "called the contact; PC is off the network", "cli:tanaka", at)
    with pytest.raises(operator.TicketError, match="close needs it to be resolved"):
        act(sessions, operator.close, tid, "cli:tanaka", at)
    act(sessions, operator.resolve, tid, SUMMARY, "cli:tanaka", at, POLICY)
    act(sessions, operator.close, tid, "cli:tanaka", at + timedelta(days=1))

    ticket = only_ticket(sessions)
    assert (ticket.state, ticket.assignee, ticket.summary) == ("closed", "tanaka", SUMMARY)
    assert ticket.acknowledged_at == at and ticket.closed_at == at + timedelta(days=1)
    assert audit_actions(sessions, "cli:tanaka") == [
        "ticket.in_progress",
        "ticket.note",
        "ticket.resolved",
        "report.queued",  # the company's incident report
        "ticket.closed",
    ]
    with sessions() as session:
        history = operator.history(session, ticket)
    assert [h.what for h in history][:2] == ["ticket.opened", "ticket.acknowledged"]
    assert "note" in [h.what for h in history]
    assert any("PC is off the network" in h.text for h in history)


def test_resolving_needs_the_whole_incident_summary_and_sends_the_company_its_report(
    sessions, tenant_id
):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    partial = dict(SUMMARY, cause="  ", effect="")
    with pytest.raises(operator.TicketError) as refused:
        act(sessions, operator.resolve, tid, partial, "cli:sato", T0, POLICY)
    assert "the cause" in str(refused.value) and "the effect of the handling" in str(refused.value)
    assert only_ticket(sessions).state == "new"

    act(sessions, operator.resolve, tid, SUMMARY, "cli:sato", T0, POLICY)
    reports = [r for k, r in outbox(sessions) if k == "incident-report"]
    assert reports == ["it@acme.example.jp"]
    with sessions() as session:
        report = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "incident-report")
        ).one()
        assert "添付ファイルの実行" in report.body_text and "インシデントの原因" in report.body_text
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued")
        ).all()
        ticket = only_ticket(sessions)
        assert (event.actor, event.at, event.tenant_id, event.target) == (
            "cli:sato",
            T0,
            tenant_id,
            "company:acme",
        )
        assert event.detail == {
            "kind": "incident-report",
            "company": "acme",
            "period": {"from": ticket.created_at.isoformat(), "to": T0.isoformat()},
            "recipients": ["it@acme.example.jp"],
            "subject": report.subject,
            "outbox_id": report.id,
            "ticket": ticket.id,
        }


def test_a_new_alert_reopens_a_recently_resolved_ticket_and_tells_the_desk(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(sessions, operator.resolve, tid, SUMMARY, "cli:sato", T0 + timedelta(hours=1), POLICY)
    add_alert(sessions, tenant_id, 200)
    triage(sessions, tenant_id, T0 + timedelta(hours=5))

    ticket = only_ticket(sessions)
    assert (ticket.state, ticket.reopened, ticket.resolved_at) == ("new", 1, None)
    assert ticket.ack_due_at is not None
    assert ("desk-update", "desk@example.jp") in outbox(sessions)
    assert "ticket.reopened" in audit_actions(sessions, "playbook")


def test_an_alert_after_a_closed_ticket_starts_a_new_one(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(sessions, operator.resolve, tid, SUMMARY, "cli:sato", T0, POLICY)
    act(sessions, operator.close, tid, "cli:sato", T0)
    add_alert(sessions, tenant_id, 300)
    triage(sessions, tenant_id, T0 + timedelta(hours=6))
    with sessions() as session:
        keys = [t.correlation_key for t in session.scalars(select(Ticket).order_by(Ticket.id))]
    assert keys == ["incident:inc-1", "incident:inc-1#2"]


def test_an_unacknowledged_ticket_climbs_the_channel_list_and_stops_when_acknowledged(
    sessions, tenant_id
):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id, T0)
    ticket = only_ticket(sessions)
    # P1 during the trial: the 24/7 incident desk has 30 minutes.
    assert ticket.channel == "desk" and ticket.ack_due_at == T0 + timedelta(minutes=30)

    assert act(sessions, escalation.escalate_overdue, POLICY, T0 + timedelta(minutes=29)) == []
    assert act(sessions, escalation.escalate_overdue, POLICY, T0 + timedelta(minutes=31)) == [
        ticket.id
    ]
    ticket = only_ticket(sessions)
    assert (ticket.channel, ticket.escalation_level) == ("duty", 1)
    assert ticket.ack_due_at == T0 + timedelta(minutes=60)
    assert ("desk-escalation", "duty@example.jp") in outbox(sessions)
    # The same missed deadline never escalates twice.
    assert act(sessions, escalation.escalate_overdue, POLICY, T0 + timedelta(minutes=45)) == []

    act(sessions, escalation.escalate_overdue, POLICY, T0 + timedelta(minutes=61))
    assert only_ticket(sessions).channel == "manager"
    act(sessions, operator.acknowledge, ticket.id, "cli:sato", T0 + timedelta(minutes=62))
    assert act(sessions, escalation.escalate_overdue, POLICY, T0 + timedelta(hours=5)) == []
    assert [r for k, r in outbox(sessions) if k == "desk-escalation"] == [
        "duty@example.jp",
        "manager@example.jp",
    ]


def test_resolved_tickets_close_themselves_after_the_quiet_period(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(sessions, operator.resolve, tid, SUMMARY, "cli:sato", T0, POLICY)
    assert act(sessions, escalation.close_quiet, POLICY, T0 + timedelta(days=6)) == []
    assert act(sessions, escalation.close_quiet, POLICY, T0 + timedelta(days=8)) == [tid]
    assert only_ticket(sessions).state == "closed"


def _device(sessions, tenant_id: int) -> Device:
    with transaction(sessions) as session:
        device = Device(tenant_id=tenant_id, source_id="dev1", name="pc-1", in_inventory=True)
        session.add(device)
        session.flush()
        return device


def test_a_second_isolation_is_refused_while_the_first_is_under_way(sessions, tenant_id):
    device = _device(sessions, tenant_id)
    connector = FakeConnector(tenant_id="t-acme")
    with transaction(sessions) as session:
        first = responses.plan(
            session, session.get_one(Device, device.id), ActionKind.ISOLATE, actor="cli:a", at=T0
        ).id
    with (
        transaction(sessions) as session,
        pytest.raises(ActionRefused, match="already under way"),
    ):
        responses.plan(
            session, session.get_one(Device, device.id), ActionKind.ISOLATE, actor="cli:b", at=T0
        )
    responses.send(sessions, first, connector, "cli:a", lambda: T0)
    responses.send(sessions, first, connector, "cli:a", lambda: T0)  # a second send is a no-op
    assert connector.started == [("dev1", ActionKind.ISOLATE)]
    responses.follow(sessions, tenant_id, connector, POLICY.desk, T0 + timedelta(minutes=1))
    with transaction(sessions) as session:
        dev = session.get_one(Device, device.id)
        assert responses.device_state(session, dev).isolated
        with pytest.raises(ActionRefused, match="already isolated"):
            responses.plan(session, dev, ActionKind.ISOLATE, actor="cli:b", at=T0)
        released = responses.plan(session, dev, ActionKind.RELEASE, actor="cli:b", at=T0)
    assert released.dedupe_key == f"release:{tenant_id}:dev1:1"
    assert audit_actions(sessions, "cli:a") == [
        "isolate.planned",
        "isolate.sending",
        "isolate.sent",
    ]


def test_an_isolation_the_edr_refuses_is_failed_with_its_reason_and_audited(sessions, tenant_id):
    device = _device(sessions, tenant_id)

    class Refusing(FakeConnector):
        def start_action(self, device_source_id, kind, comment):
            raise ApiRefused("isolation is not supported on this device", status=400)

    with transaction(sessions) as session:
        action = responses.plan(
            session, session.get_one(Device, device.id), ActionKind.ISOLATE, actor="cli:a", at=T0
        ).id
    sent = responses.send(sessions, action, Refusing(tenant_id="t-acme"), "cli:a", lambda: T0)
    assert sent.status == "failed"
    assert "the EDR refused" in sent.detail and "not supported" in sent.detail
    assert audit_actions(sessions, "cli:a") == [
        "isolate.planned",
        "isolate.sending",
        "isolate.failed",
    ]
    with transaction(sessions) as session:  # nothing under way: the operator may try again
        assert not responses.device_state(session, session.get_one(Device, device.id)).isolated
        responses.plan(
            session, session.get_one(Device, device.id), ActionKind.ISOLATE, actor="cli:a", at=T0
        )


def test_an_action_is_never_sent_through_another_tenants_connector(sessions, tenant_id):
    device = _device(sessions, tenant_id)
    with transaction(sessions) as session:
        action = responses.plan(
            session, session.get_one(Device, device.id), ActionKind.ISOLATE, actor="cli:a", at=T0
        ).id
    stranger = FakeConnector(tenant_id="t-someone-else")
    with pytest.raises(ActionRefused, match="belongs to tenant t-acme"):
        responses.send(sessions, action, stranger, "cli:a", lambda: T0)
    assert stranger.started == []
    with sessions() as session:
        assert session.get_one(ResponseAction, action).status == "planned"


@pytest.mark.parametrize(("agreed", "status"), [(True, "planned"), (False, "proposed")])
def test_ransomware_isolation_is_automatic_only_where_the_company_agreed(
    sessions, tenant_id, agreed, status
):
    with transaction(sessions) as session:
        company = session.scalars(select(Company)).one()
        company.auto_isolation = agreed
    add_alert(sessions, tenant_id, 1, category="Ransomware", title="Ransomware activity")
    triage(sessions, tenant_id)
    with sessions() as session:
        actions = session.scalars(select(ResponseAction)).all()
    assert [(a.kind, a.status) for a in actions] == [("isolate", status)]
    assert actions[0].ticket_id == only_ticket(sessions).id


class WritingConnector(FakeConnector):
    capabilities = frozenset({*FakeConnector.capabilities, Capability.WRITE_BACK})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.updates: list[tuple[str, AlertUpdate]] = []

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        self.updates.append((source_id, update))


def test_resolving_writes_the_verdict_back_once_where_the_switch_is_on(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    add_alert(sessions, tenant_id, 2)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(
        sessions,
        operator.resolve,
        tid,
        SUMMARY,
        "cli:sato",
        T0,
        POLICY,
    )
    with transaction(sessions) as session:
        for alert in session.scalars(select(Alert)):
            assert alert.write_back == ""
    with transaction(sessions) as session:
        operator.reopen(session, tid, "wrong verdict", "cli:sato", T0)
        operator.resolve(
            session,
            tid,
            SUMMARY,
            "cli:sato",
            T0,
            POLICY,
            classification="truePositive",
            determination="malware",
            write_back=True,
        )
    connector = WritingConnector(tenant_id="t-acme")
    assert writeback.write_back_pending(sessions, tenant_id, connector).written == 2
    assert writeback.write_back_pending(sessions, tenant_id, connector).written == 0
    assert sorted(s for s, _ in connector.updates) == ["a1", "a2"]
    update = connector.updates[0][1]
    assert (update.status, update.classification, update.determination) == (
        "resolved",
        "truepositive",
        "malware",
    )
    assert f"ticket #{tid}" in update.comment


def test_write_back_is_skipped_for_a_tenant_without_the_switch(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    tid = only_ticket(sessions).id
    act(
        sessions,
        operator.resolve,
        tid,
        SUMMARY,
        "cli:sato",
        T0,
        POLICY,
    )
    with transaction(sessions) as session:
        session.scalars(select(Alert)).one().write_back = "pending"
    result = writeback.write_back_pending(sessions, tenant_id, FakeConnector(tenant_id="t-acme"))
    assert (result.written, result.skipped) == (0, 1)
    with sessions() as session:
        assert session.scalars(select(Alert)).one().write_back == "off"


def test_the_company_is_told_when_its_device_is_isolated(sessions, tenant_id):
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    device = _device(sessions, tenant_id)
    connector = FakeConnector(tenant_id="t-acme")
    with transaction(sessions) as session:
        ticket = session.scalars(select(Ticket)).one()
        action = responses.plan(
            session,
            session.get_one(Device, device.id),
            ActionKind.ISOLATE,
            actor="cli:a",
            at=T0,
            ticket=ticket,
        ).id
    responses.send(sessions, action, connector, "cli:a", lambda: T0)
    connector.statuses["action-1"] = ActionStatus.IN_PROGRESS
    assert responses.follow(sessions, tenant_id, connector, POLICY.desk, T0) == []
    connector.statuses["action-1"] = ActionStatus.SUCCEEDED
    assert responses.follow(sessions, tenant_id, connector, POLICY.desk, T0) == [action]
    assert [r for k, r in outbox(sessions) if k == "isolation-notice"] == ["it@acme.example.jp"]


def test_a_playbook_escalation_channel_carries_the_desk_notice(sessions, tenant_id, tmp_path):
    from edrtrial.playbooks.engine import load_playbooks

    site = tmp_path / "site.toml"
    site.write_text(
        '[[rules]]\nname = "ransomware-to-teams"\ncategory = "Ransomware"\nescalate = "teams"\n',
        encoding="utf-8",
    )
    playbook = load_playbooks([site, *default_playbook_paths()])
    policy = DeskPolicy(
        DeskConfig(
            name="デスク",
            email="desk@example.jp",
            channels=[
                CHANNELS[0],
                ChannelConfig(name="teams", kind="teams", url="env:EDRTRIAL_TEAMS_URL"),
            ],
        )
    )
    add_alert(sessions, tenant_id, 1, category="Ransomware", incident_source_id="inc-9")
    add_alert(sessions, tenant_id, 2, category="Execution", incident_source_id="inc-10")
    with transaction(sessions) as session:
        triage_pending(session, tenant_id, "acme", playbook, policy, T0)
    with sessions() as session:
        routes = {t.correlation_key: t.channel for t in session.scalars(select(Ticket))}
        desk_notices = {
            (m.channel, m.recipient)
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "desk-notice")
            )
        }
    assert routes == {"incident:inc-9": "teams", "incident:inc-10": "desk"}
    assert desk_notices == {("teams", "teams"), ("mail", "desk@example.jp")}


AFTER_TRIAL = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # the fixture's trial ended 11/30 (JST)


def _ticket_and_device(sessions, tenant_id: int) -> tuple[int, int]:
    add_alert(sessions, tenant_id, 1)
    triage(sessions, tenant_id)
    return only_ticket(sessions).id, _device(sessions, tenant_id).id


def _plan(sessions, device_id: int, kind: ActionKind, at: datetime, ticket_id: int | None = None):
    with transaction(sessions) as session:
        ticket = session.get_one(Ticket, ticket_id) if ticket_id else None
        device = session.get_one(Device, device_id)
        return responses.plan(session, device, kind, actor="cli:a", at=at, ticket=ticket).id


def test_isolating_an_offboarded_device_is_refused(sessions, tenant_id):
    device_id = _device(sessions, tenant_id).id
    with transaction(sessions) as session:
        session.add(
            ResponseAction(
                dedupe_key=f"offboard:{tenant_id}:dev1",
                tenant_id=tenant_id,
                device_id=device_id,
                kind="offboard",
                status="succeeded",
            )
        )
    with pytest.raises(ActionRefused, match="pc-1 is offboarded .*no longer acts on it"):
        _plan(sessions, device_id, ActionKind.ISOLATE, T0)


def test_isolation_is_refused_after_the_trial_but_an_isolated_device_can_still_be_released(
    sessions, tenant_id
):
    isolated = _device(sessions, tenant_id).id
    with transaction(sessions) as session:
        other = Device(tenant_id=tenant_id, source_id="dev2", name="pc-2", in_inventory=True)
        session.add(other)
        session.flush()
        other_id = other.id
    connector = FakeConnector(tenant_id="t-acme")
    action = _plan(sessions, isolated, ActionKind.ISOLATE, T0)
    responses.send(sessions, action, connector, "cli:a", lambda: T0)
    responses.follow(sessions, tenant_id, connector, POLICY.desk, T0)
    with pytest.raises(ActionRefused, match="pc-2: its company's trial ended 2026-11-30"):
        _plan(sessions, other_id, ActionKind.ISOLATE, AFTER_TRIAL)
    release = _plan(sessions, isolated, ActionKind.RELEASE, AFTER_TRIAL)  # never left cut off
    responses.send(sessions, release, connector, "cli:a", lambda: AFTER_TRIAL)
    assert connector.started == [("dev1", ActionKind.ISOLATE), ("dev1", ActionKind.RELEASE)]


def test_an_isolation_planned_in_the_trial_is_cancelled_when_sent_after_it(sessions, tenant_id):
    device_id = _device(sessions, tenant_id).id
    action = _plan(sessions, device_id, ActionKind.ISOLATE, T0)
    connector = FakeConnector(tenant_id="t-acme")
    sent = responses.send(sessions, action, connector, "playbook", lambda: AFTER_TRIAL)
    assert connector.started == []
    assert sent.status == "cancelled" and "trial ended 2026-11-30" in sent.detail
    with sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "isolate.cancelled")
        ).one()
    assert event.actor == "playbook" and "trial ended" in event.detail["reason"]


def test_a_ticket_with_an_isolation_under_way_can_be_neither_resolved_nor_closed(
    sessions, tenant_id
):
    tid, device_id = _ticket_and_device(sessions, tenant_id)
    action = _plan(sessions, device_id, ActionKind.ISOLATE, T0, tid)
    with pytest.raises(
        operator.TicketError, match=r"cannot be resolved: the isolate of pc-1 is planned"
    ):
        act(sessions, operator.resolve, tid, SUMMARY, "cli:a", T0, POLICY)
    connector = FakeConnector(tenant_id="t-acme")
    responses.send(sessions, action, connector, "cli:a", lambda: T0)
    with pytest.raises(operator.TicketError, match=r"cannot be resolved: .* is pending .*wait for"):
        act(sessions, operator.resolve, tid, SUMMARY, "cli:a", T0, POLICY)
    assert [k for k, _ in outbox(sessions)].count("incident-report") == 0
    responses.follow(sessions, tenant_id, connector, POLICY.desk, T0)
    act(sessions, operator.resolve, tid, SUMMARY, "cli:a", T0, POLICY)
    assert only_ticket(sessions).state == "resolved"


def test_a_resolved_ticket_with_an_action_still_under_way_cannot_be_closed(sessions, tenant_id):
    tid, device_id = _ticket_and_device(sessions, tenant_id)
    act(sessions, operator.resolve, tid, SUMMARY, "cli:a", T0, POLICY)
    with transaction(sessions) as session:  # left by an earlier version, or written by hand
        session.add(
            ResponseAction(
                dedupe_key=f"isolate:{tenant_id}:dev1:1",
                tenant_id=tenant_id,
                device_id=device_id,
                ticket_id=tid,
                kind="isolate",
                status="inprogress",
            )
        )
    with pytest.raises(
        operator.TicketError, match="cannot be closed: the isolate of pc-1 is inprogress"
    ):
        act(sessions, operator.close, tid, "cli:a", T0)
    assert only_ticket(sessions).state == "resolved"


def test_acting_from_a_resolved_or_closed_ticket_asks_to_reopen_it_first(sessions, tenant_id):
    tid, device_id = _ticket_and_device(sessions, tenant_id)
    act(sessions, operator.resolve, tid, SUMMARY, "cli:a", T0, POLICY)
    with pytest.raises(
        ActionRefused, match=f"ticket #{tid} is resolved; reopen ticket #{tid} first"
    ):
        _plan(sessions, device_id, ActionKind.ISOLATE, T0, tid)
    act(sessions, operator.close, tid, "cli:a", T0)
    with pytest.raises(ActionRefused, match=f"ticket #{tid} is closed; reopen ticket #{tid} first"):
        _plan(sessions, device_id, ActionKind.ISOLATE, T0, tid)
    act(sessions, operator.reopen, tid, "the device talks to the C2 again", "cli:a", T0)
    _plan(sessions, device_id, ActionKind.ISOLATE, T0, tid)


def test_an_isolation_whose_ticket_was_resolved_meanwhile_is_not_sent(sessions, tenant_id):
    tid, device_id = _ticket_and_device(sessions, tenant_id)
    action = _plan(sessions, device_id, ActionKind.ISOLATE, T0, tid)
    with transaction(sessions) as session:  # e.g. resolved by an earlier version of the desk
        session.get_one(Ticket, tid).state = "resolved"
    connector = FakeConnector(tenant_id="t-acme")
    sent = responses.send(sessions, action, connector, "playbook", lambda: T0)
    assert connector.started == []
    assert sent.status == "cancelled" and f"reopen ticket #{tid} first" in sent.detail
    assert [k for k, _ in outbox(sessions)].count("isolation-notice") == 0


def test_a_device_silent_for_days_is_a_warning_not_a_refusal(sessions, tenant_id):
    with sessions() as session:
        device = session.get_one(Device, _device(sessions, tenant_id).id)
    device.last_seen = T0 - timedelta(days=2, hours=23)
    assert responses.silence_warning(device, T0, 3) is None
    device.last_seen = T0 - timedelta(days=4, hours=2)
    assert responses.silence_warning(device, T0, 3) == (
        "pc-1 has not reported for 4 days: the action waits until it reports"
    )


def test_no_isolation_is_proposed_for_a_device_the_desk_could_not_isolate(sessions, tenant_id):
    """After the trial (or once offboarded) a proposal would only meet a refusal."""
    tid, device_id = _ticket_and_device(sessions, tenant_id)
    with transaction(sessions) as session:
        ticket, device = session.get_one(Ticket, tid), session.get_one(Device, device_id)
        late = responses.propose(session, device, ticket, at=AFTER_TRIAL, reason="ransomware")
        in_trial = responses.propose(session, device, ticket, at=T0, reason="ransomware")
    assert late is None
    assert in_trial is not None and in_trial.status == "proposed"
