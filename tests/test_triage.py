"""Triage: one ticket per incident, raised when it worsens, and each notice sent once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from signatures import DOCUMENTED_COMMAND
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig
from edrtrial.connectors.base import AlertRecord, AlertUpdate, Capability, DeviceRef, Evidence
from edrtrial.db import transaction
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.triage import triage_pending
from edrtrial.devices import writeback
from edrtrial.ingest import records
from edrtrial.models import Alert, AuditEvent, Device, OutboxMessage, Ticket, TicketNote
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks
from edrtrial.timeutil import Stamp

from conftest import add_tenant
from fakes import FakeConnector

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
DESK = DeskConfig(name="デスク", email="desk@example.jp", phone="03-0000-0000")
POLICY = DeskPolicy(DESK)
PLAYBOOK = load_playbooks(default_playbook_paths())


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> int:
    return add_tenant(sessions, "acme", "株式会社アクメ")


def add_alert(sessions, tenant_id: int, n: int, **fields) -> None:
    base = dict(
        source="defender",
        source_id=f"a{n}",
        title=f"alert {n}",
        severity="medium",
        status="new",
        category="Execution",
        device_source_ids=["dev1"],
        device_names=["pc-1.acme.example.jp"],
        created_at=T0 + timedelta(minutes=n),
        last_update_at=T0 + timedelta(minutes=n),
    )
    base.update(fields)
    with transaction(sessions) as session:
        session.add(Alert(tenant_id=tenant_id, **base))


def triage(sessions, tenant_id: int):
    with transaction(sessions) as session:
        return triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, T0 + timedelta(hours=1))


def notices(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        return sorted((m.kind, m.recipient) for m in session.scalars(select(OutboxMessage)))


def test_an_incident_that_worsens_is_raised_to_p1_re_alerts_the_desk_and_tells_the_company(
    sessions, tenant_id
):
    add_alert(sessions, tenant_id, 1, incident_source_id="77")
    first = triage(sessions, tenant_id)
    assert (first.tickets_opened, first.notices_queued) == (1, 1)
    assert notices(sessions) == [("desk-notice", "desk@example.jp")]

    add_alert(
        sessions,
        tenant_id,
        2,
        incident_source_id="77",
        severity="high",
        category="CredentialAccess",
        mitre_techniques=["T1003.001"],
    )
    add_alert(
        sessions, tenant_id, 3, incident_source_id="77", severity="high", category="Ransomware"
    )
    second = triage(sessions, tenant_id)
    assert (second.triaged, second.tickets_opened, second.notices_queued) == (2, 0, 2)

    with sessions() as session:
        [ticket] = session.scalars(select(Ticket)).all()
        assert ticket.priority == "P1" and ticket.correlation_key == "incident:77"
        assert len(ticket.alerts) == 3
    assert notices(sessions) == [
        ("company-notice", "it@acme.example.jp"),
        ("desk-notice", "desk@example.jp"),
        ("desk-notice", "desk@example.jp"),
    ]
    assert triage(sessions, tenant_id).triaged == 0


def test_alerts_without_an_incident_group_by_device_and_technique_within_the_window(
    sessions, tenant_id
):
    add_alert(sessions, tenant_id, 1, mitre_techniques=["T1059.001"])
    add_alert(sessions, tenant_id, 2, mitre_techniques=["T1059.001"])  # same device, 1 min later
    add_alert(sessions, tenant_id, 3, mitre_techniques=["T1105"])  # another technique
    add_alert(sessions, tenant_id, 4, mitre_techniques=["T1059.001"], device_source_ids=["dev2"])
    add_alert(sessions, tenant_id, 90, mitre_techniques=["T1059.001"])  # 88 min later: new
    assert triage(sessions, tenant_id).tickets_opened == 4
    with sessions() as session:
        keys = {
            t.correlation_key: sorted(a.source_id for a in t.alerts)
            for t in session.scalars(select(Ticket))
        }
    assert keys == {
        "device:dev1:T1059.001": ["a1", "a2"],
        "device:dev1:T1105": ["a3"],
        "device:dev2:T1059.001": ["a4"],
        "device:dev1:T1059.001#2": ["a90"],
    }


def test_the_detection_test_verifies_its_device_and_opens_nothing(sessions, tenant_id):
    add_alert(
        sessions,
        tenant_id,
        1,
        title="[Test Alert] Suspicious Powershell commandline",
        severity="informational",
        detection_source="microsoftDefenderForEndpoint",
        mitre_techniques=["T1059.001"],
        evidence={"command_lines": [DOCUMENTED_COMMAND]},
    )
    result = triage(sessions, tenant_id)
    assert (result.suppressed, result.devices_verified, result.tickets_opened) == (1, 1, 0)
    with sessions() as session:
        device = session.scalar(select(Device).where(Device.source_id == "dev1"))
        assert device is not None and device.detection_test_at == T0 + timedelta(minutes=1)
        alert = session.scalars(select(Alert)).one()
        assert (alert.suppressed_reason, alert.write_back) == ("detection-test", "pending")
        [event] = session.scalars(select(AuditEvent)).all()
        assert (event.action, event.actor, event.target) == (
            "alert.suppressed",
            "playbook",
            f"alert:{alert.id}",
        )
        assert event.tenant_id == tenant_id
        assert event.detail == {
            "rule": "onboarding-detection-test",
            "reason": "detection-test",
            "title": "[Test Alert] Suspicious Powershell commandline",
            "severity": "informational",
            "source_id": "a1",
            "classification": "informationalexpectedactivity",
            "determination": "securitytesting",
            "devices_verified": ["pc-1.acme.example.jp"],
        }
    assert notices(sessions) == []


def test_eicar_in_a_high_credential_theft_title_opens_a_ticket_and_tells_everyone(
    sessions, tenant_id
):
    add_alert(
        sessions,
        tenant_id,
        1,
        title="Possible credential theft by 'eicar-update.exe'",
        severity="high",
        category="CredentialAccess",
        detection_source="microsoftDefenderForEndpoint",
        mitre_techniques=["T1003.001"],
    )
    result = triage(sessions, tenant_id)
    assert (result.suppressed, result.devices_verified, result.tickets_opened) == (0, 0, 1)
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.suppressed_reason, alert.write_back, alert.classification) == (None, "", "")
        assert alert.ticket is not None and alert.ticket.priority == "P1"
        device = session.scalar(select(Device).where(Device.source_id == "dev1"))
        assert device is not None and device.detection_test_at is None
    assert notices(sessions) == [
        ("company-notice", "it@acme.example.jp"),
        ("desk-notice", "desk@example.jp"),
    ]


def test_a_medium_powershell_alert_without_the_test_command_reaches_the_desk(sessions, tenant_id):
    add_alert(
        sessions,
        tenant_id,
        1,
        title="Suspicious PowerShell command line",
        severity="medium",
        detection_source="microsoftDefenderForEndpoint",
        mitre_techniques=["T1059.001"],
        evidence={"command_lines": ["powershell.exe -enc SQBFAFgAIAAoAGkAdwByACkA"]},
    )
    result = triage(sessions, tenant_id)
    assert (result.suppressed, result.devices_verified, result.tickets_opened) == (0, 0, 1)
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.suppressed_reason is None and alert.ticket is not None
        assert alert.ticket.priority == "P2"
    assert notices(sessions) == [("desk-notice", "desk@example.jp")]


def test_an_alert_raised_after_triage_is_triaged_again(sessions, tenant_id):
    from edrtrial.connectors.base import AlertRecord
    from edrtrial.ingest import records
    from edrtrial.timeutil import Stamp

    def record(severity: str, minutes: int) -> AlertRecord:
        return AlertRecord(
            source_id="a9",
            title="Suspicious activity",
            severity=severity,
            status="new",
            last_update_at=Stamp.of(T0 + timedelta(minutes=minutes)),
            created_at=T0,
            incident_source_id="88",
            category="Execution",
        )

    with transaction(sessions) as session:
        records.upsert_alerts(session, tenant_id, "defender", [record("informational", 1)])
    assert triage(sessions, tenant_id).tickets_opened == 0  # P4: report only

    with transaction(sessions) as session:  # Defender raises it to high
        records.upsert_alerts(session, tenant_id, "defender", [record("high", 30)])
    again = triage(sessions, tenant_id)
    assert (again.triaged, again.tickets_opened) == (1, 1)
    with sessions() as session:
        [ticket] = session.scalars(select(Ticket)).all()
        assert (ticket.priority, ticket.correlation_key) == ("P1", "incident:88")

    with transaction(sessions) as session:  # only its status moves: nothing to re-decide
        resolved = dataclasses.replace(record("high", 60), status="resolved")
        assert records.upsert_alerts(session, tenant_id, "defender", [resolved]).updated == 1
    assert triage(sessions, tenant_id).triaged == 0


# --- an alert suppressed as the detection test that Defender turns into an attack -------------


class _Recording(FakeConnector):
    capabilities = frozenset({*FakeConnector.capabilities, Capability.WRITE_BACK})

    def __init__(self) -> None:
        super().__init__(tenant_id="t-acme")
        self.sent: list[tuple[str, AlertUpdate]] = []

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        self.sent.append((source_id, update))


def _test_alert(at: datetime, **changes: Any) -> AlertRecord:
    base: dict[str, Any] = dict(
        source_id="a1",
        title="[Test Alert] Suspicious Powershell commandline",
        severity="informational",
        status="new",
        category="Execution",
        detection_source="microsoftDefenderForEndpoint",
        last_update_at=Stamp.of(at),
        created_at=T0,
        devices=(DeviceRef("dev1", "pc-1.acme.example.jp"),),
        evidence=Evidence(command_lines=(DOCUMENTED_COMMAND,)),
    )
    return AlertRecord(**(base | changes))


def _store_and_triage(sessions, tenant_id: int, record: AlertRecord, at: datetime):
    with transaction(sessions) as session:
        records.upsert_alerts(session, tenant_id, "defender", [record])
        return triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, at)


def _now_credential_theft(at: datetime) -> AlertRecord:
    """Defender's update: High credential theft, with the test command and a dump of LSASS."""
    return _test_alert(
        at,
        severity="high",
        category="CredentialAccess",
        mitre_techniques=("T1003.001",),
        evidence=Evidence(command_lines=(DOCUMENTED_COMMAND, "rundll32 comsvcs.dll MiniDump")),
    )


def test_a_suppressed_test_alert_that_becomes_an_attack_is_not_written_back_as_a_test(
    sessions, tenant_id
):
    assert _store_and_triage(sessions, tenant_id, _test_alert(T0), T0).suppressed == 1
    later = T0 + timedelta(minutes=5)  # before the desk job wrote the verdict back

    again = _store_and_triage(sessions, tenant_id, _now_credential_theft(later), later)

    assert again.tickets_opened == 1
    connector = _Recording()
    writeback.write_back_pending(sessions, tenant_id, connector)
    assert connector.sent == []  # Defender is not told it was a security test
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        device = session.scalars(select(Device)).one()
        assert (alert.classification, alert.determination, alert.write_back) == ("", "", "")
        assert alert.suppressed_reason is None
        assert device.detection_test_at is None  # the onboarding check no longer counts it
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.suppression_lifted")
        ).all()
        assert (event.actor, event.target) == ("playbook", f"alert:{alert.id}")
        assert event.detail["rule"] == "onboarding-detection-test"
        assert event.detail["write_back"] == "pending"
        assert event.detail["devices_no_longer_tested"] == ["pc-1.acme.example.jp"]
    assert ("desk-update", "desk@example.jp") not in notices(sessions)


def test_a_device_marked_tested_by_another_alert_keeps_its_mark(sessions, tenant_id):
    earlier = _test_alert(T0 - timedelta(days=1), source_id="a0", created_at=T0 - timedelta(days=1))
    _store_and_triage(sessions, tenant_id, earlier, T0 - timedelta(days=1))
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    later = T0 + timedelta(minutes=5)

    _store_and_triage(sessions, tenant_id, _now_credential_theft(later), later)

    with sessions() as session:
        device = session.scalars(select(Device)).one()
        assert device.detection_test_at == T0 - timedelta(days=1)


def test_a_test_verdict_already_in_defender_is_flagged_on_the_new_ticket_and_to_the_desk(
    sessions, tenant_id
):
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    writeback.write_back_pending(sessions, tenant_id, _Recording())  # resolved as a test
    later = T0 + timedelta(minutes=5)

    _store_and_triage(sessions, tenant_id, _now_credential_theft(later), later)

    with sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        [note] = session.scalars(select(TicketNote)).all()
        assert note.ticket_id == ticket.id
        assert "resolved in Defender as a test" in note.text
        assert "'onboarding-detection-test'" in note.text and "reopen it there" in note.text
        [update] = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "desk-update")
        ).all()
        assert "onboarding-detection-test" in update.body_text
        assert "Defender でこのアラートを再オープンしてください" in update.body_text
        alert = session.scalars(select(Alert)).one()
        assert alert.write_back == "done"  # what Defender holds; nothing more is sent
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.suppression_lifted")
        ).all()
        assert event.detail["write_back"] == "done"


def _told_to_reopen(session: Session) -> tuple[list[TicketNote], list[OutboxMessage]]:
    """The ticket notes and desk updates saying Defender still holds the alert as a test."""
    notes = [n for n in session.scalars(select(TicketNote)) if "reopen it there" in n.text]
    updates = session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "desk-update")
    ).all()
    return notes, [u for u in updates if "再オープン" in u.body_text]


def test_a_test_verdict_in_defender_on_an_alert_that_needs_no_ticket_still_reaches_the_desk(
    sessions, tenant_id
):
    """Defender keeps the test alert Informational but adds another process to it: no longer
    the test, and the playbook's Informational rule opens no ticket, yet Defender shows it
    resolved as a security test, so the desk gets a ticket in its queue saying so."""
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    writeback.write_back_pending(sessions, tenant_id, _Recording())  # resolved as a test
    later = T0 + timedelta(minutes=5)
    changed = _test_alert(
        later, evidence=Evidence(command_lines=(DOCUMENTED_COMMAND, "powershell -enc SQBFAFgA"))
    )

    _store_and_triage(sessions, tenant_id, changed, later)

    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.suppressed_reason, alert.write_back) == (None, "done")
        ticket = session.scalars(select(Ticket)).one()
        assert (alert.ticket_id, ticket.priority) == (ticket.id, "P3")
        notes, updates = _told_to_reopen(session)
        assert [n.ticket_id for n in notes] == [ticket.id]
        assert len(updates) == 1 and "onboarding-detection-test" in updates[0].body_text


def test_an_informational_alert_that_was_never_a_written_test_opens_no_ticket(sessions, tenant_id):
    """The queue ticket is only for a verdict Defender holds: a lifted test whose verdict was
    never sent goes back to the Informational rule (report only)."""
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    later = T0 + timedelta(minutes=5)
    changed = _test_alert(
        later, evidence=Evidence(command_lines=(DOCUMENTED_COMMAND, "powershell -enc SQBFAFgA"))
    )

    _store_and_triage(sessions, tenant_id, changed, later)

    with sessions() as session:
        assert session.scalars(select(Ticket)).all() == []
        assert session.scalars(select(Alert)).one().write_back == ""


class _RetriagedWhileSending(_Recording):
    """Defender's update of the alert is triaged (the poll) while the verdict is on its way."""

    def __init__(self, sessions, tenant_id: int) -> None:
        super().__init__()
        self.sessions, self.tenant = sessions, tenant_id

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        later = T0 + timedelta(minutes=5)
        _store_and_triage(self.sessions, self.tenant, _now_credential_theft(later), later)
        super().update_alert(source_id, update)


def test_a_test_verdict_accepted_while_re_triage_withdrew_it_is_flagged_to_the_desk(
    sessions, tenant_id
):
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    connector = _RetriagedWhileSending(sessions, tenant_id)

    writeback.write_back_pending(sessions, tenant_id, connector)
    with transaction(sessions) as session:  # the next poll's pass, and the one after it
        for _ in range(2):
            triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, T0 + timedelta(hours=1))

    assert connector.sent[0][1].determination.casefold() == "securitytesting"  # a test
    with sessions() as session:
        alert = session.scalars(select(Alert)).one()
        ticket = session.scalars(select(Ticket)).one()
        assert (alert.ticket_id, ticket.priority) == (ticket.id, "P1")  # credential theft
        assert (alert.write_back, alert.classification) == ("done", "")
        notes, updates = _told_to_reopen(session)
        assert [n.ticket_id for n in notes] == [ticket.id]  # once, on the attack's ticket
        assert len(updates) == 1
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.written_back")
        ).all()
        assert event.detail["determination"].casefold() == "securitytesting"
        assert event.detail["withdrawn_meanwhile"] is True


def test_a_test_verdict_written_while_a_re_triage_runs_is_not_overwritten_as_withdrawn(
    sessions, tenant_id, monkeypatch
):
    """The desk job settles the verdict after the re-triage read the alert, before it wrote."""
    from edrtrial.desk import triage as triaging

    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)
    later = T0 + timedelta(minutes=5)
    with transaction(sessions) as session:
        records.upsert_alerts(session, tenant_id, "defender", [_now_credential_theft(later)])
    connector = _Recording()
    rule_of = triaging._suppressing_rule

    def written_meanwhile(session: Session, alert: Alert) -> str:
        writeback.write_back_pending(sessions, tenant_id, connector)
        return rule_of(session, alert)

    monkeypatch.setattr(triaging, "_suppressing_rule", written_meanwhile)
    with transaction(sessions) as session:
        triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, later)

    assert connector.sent[0][1].determination.casefold() == "securitytesting"
    with sessions() as session:
        assert session.scalars(select(Alert)).one().write_back == "done"
        notes, updates = _told_to_reopen(session)
        assert len(notes) == 1 and len(updates) == 1


def test_a_device_tested_again_keeps_its_mark_when_its_first_test_becomes_an_attack(
    sessions, tenant_id
):
    _store_and_triage(sessions, tenant_id, _test_alert(T0), T0)  # a1 marks the device
    second = T0 + timedelta(hours=1)  # the company runs the test again: a genuine one
    _store_and_triage(
        sessions, tenant_id, _test_alert(second, source_id="a2", created_at=second), second
    )
    later = T0 + timedelta(hours=2)

    _store_and_triage(sessions, tenant_id, _now_credential_theft(later), later)  # a1 changes

    with sessions() as session:
        a2 = session.scalars(select(Alert).where(Alert.source_id == "a2")).one()
        assert a2.suppressed_reason == "detection-test"
        device = session.scalars(select(Device)).one()
        assert device.detection_test_at == second  # the onboarding check still counts it
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "alert.suppression_lifted")
        ).all()
        assert event.detail["devices_tested_by_another_alert"] == ["pc-1.acme.example.jp"]
