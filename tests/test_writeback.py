"""Write-back keeps its state and the EDR's reason for a refusal apart, and audits each write."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpx import HTTPXMock
from signatures import DOCUMENTED_COMMAND
from sqlalchemy import select

from edrtrial import audit
from edrtrial.config import DeskConfig
from edrtrial.connectors.base import AlertUpdate, Capability
from edrtrial.db import transaction
from edrtrial.desk import operator
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.triage import triage_pending
from edrtrial.devices import writeback
from edrtrial.errors import PermanentError, TransientError
from edrtrial.models import Alert, AuditEvent, Ticket
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks
from edrtrial.states import WriteBackState

from conftest import add_tenant
from fakes import FakeConnector
from test_defender_support import ALERTS_URL, fake_sign_in, make_connector, payload

PLAYBOOK = load_playbooks(default_playbook_paths())
POLICY = DeskPolicy(DeskConfig(name="デスク", email="desk@example.jp", phone="03-0000-0000"))


class Refusing(FakeConnector):
    capabilities = frozenset({*FakeConnector.capabilities, Capability.WRITE_BACK})

    def __init__(self, errors: dict[str, Exception]) -> None:
        super().__init__(tenant_id="t-acme")
        self.errors = errors

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        if source_id in self.errors:
            raise self.errors[source_id]


def test_a_refusal_is_failed_with_its_reason_apart_and_a_throttle_waits(sessions):
    tenant_id = add_tenant(sessions, "acme")
    with transaction(sessions) as session:
        for n in (1, 2, 3):
            session.add(
                Alert(
                    tenant_id=tenant_id, source="defender", source_id=f"a{n}", write_back="pending"
                )
            )
    connector = Refusing(
        {
            "a1": PermanentError("403 Forbidden: no SecurityAlert.ReadWrite.All"),
            "a3": TransientError("429"),
        }
    )
    result = writeback.write_back_pending(sessions, tenant_id, connector)
    assert (result.written, result.failed, result.deferred) == (1, 1, 1)
    with sessions() as session:
        rows = {
            a.source_id: (a.write_back, a.write_back_error) for a in session.scalars(select(Alert))
        }
    assert rows == {
        "a1": (WriteBackState.FAILED, "403 Forbidden: no SecurityAlert.ReadWrite.All"),
        "a2": (WriteBackState.DONE, ""),
        "a3": (WriteBackState.PENDING, ""),
    }


# --- audited, through the Defender connector against Graph's documented answers ---------------

TEST_ALERT = "da637551227677560813_-961444813"  # the alert of the documented PATCH
RESOLVED_ALERT = "da637551227677560813_-000000001"
GONE_ALERT = "da637551227677560813_-000000002"
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
SUMMARY = {
    "when": "11/20 10:00",
    "what": "PowerShell on pc-1",
    "cause": "an administrator's script",
    "handling": "checked with the company",
    "effect": "nothing to do",
}


def _alert(sessions, tenant_id: int, source_id: str, **fields: Any) -> int:
    with transaction(sessions) as session:
        alert = Alert(
            tenant_id=tenant_id,
            source="defender",
            source_id=source_id,
            status="new",
            category="Execution",
            detection_source="microsoftDefenderForEndpoint",
            device_source_ids=["dev1"],
            device_names=["pc-1.acme.example.jp"],
            created_at=NOW - timedelta(minutes=30),
            last_update_at=NOW - timedelta(minutes=30),
            **fields,
        )
        session.add(alert)
        session.flush()
        return alert.id


def _triage(sessions, tenant_id: int) -> None:
    with transaction(sessions) as session:
        triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, NOW)


def _events(sessions, *actions: str) -> list[AuditEvent]:
    with sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
        return list(session.scalars(query))


def _graph_accepts(httpx_mock: HTTPXMock, source_id: str) -> None:
    url = f"{ALERTS_URL}/{source_id}"
    documented = payload("graph__update_alert_v2_response.json")
    httpx_mock.add_response(url=url, method="PATCH", json=documented)
    httpx_mock.add_response(url=f"{url}/comments", method="POST", json={"value": []})


def test_a_suppression_written_back_is_audited_with_its_rule(
    sessions, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenant_id = add_tenant(sessions, "acme")
    alert_id = _alert(
        sessions,
        tenant_id,
        TEST_ALERT,
        title="[Test Alert] Suspicious Powershell commandline",
        severity="informational",
        evidence={"command_lines": [DOCUMENTED_COMMAND]},
    )
    _triage(sessions, tenant_id)
    fake_sign_in(httpx_mock)
    _graph_accepts(httpx_mock, TEST_ALERT)
    connector = make_connector(monkeypatch, tmp_path, write_back=True)

    result = writeback.write_back_pending(sessions, tenant_id, connector)
    connector.close()

    assert (result.written, result.failed) == (1, 0)
    [patch] = httpx_mock.get_requests(url=f"{ALERTS_URL}/{TEST_ALERT}", method="PATCH")
    assert json.loads(patch.content) == {
        "status": "resolved",
        "classification": "informationalExpectedActivity",
        "determination": "securityTesting",
    }
    [event] = _events(sessions, "alert.written_back")
    assert (event.actor, event.tenant_id, event.target) == (
        "playbook",
        tenant_id,
        f"alert:{alert_id}",
    )
    assert event.detail == {
        "source_id": TEST_ALERT,
        "edr_tenant": "t-acme",
        "status": "resolved",
        "classification": "informationalexpectedactivity",
        "determination": "securitytesting",
        "comment": "edrtrial: detection-test by playbook",
        "suppressed": "detection-test",
        "rule": "onboarding-detection-test",
    }


def test_the_desks_verdict_written_back_or_refused_is_audited_as_the_operators(
    sessions, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tenant_id = add_tenant(sessions, "acme")
    for source_id in (RESOLVED_ALERT, GONE_ALERT):
        _alert(
            sessions,
            tenant_id,
            source_id,
            title="Suspicious PowerShell command line",
            severity="medium",
            incident_source_id="77",
        )
    _triage(sessions, tenant_id)
    with transaction(sessions) as session:
        ticket = session.scalars(select(Ticket)).one()
        operator.resolve(
            session,
            ticket.id,
            SUMMARY,
            "cli:sato",
            NOW,
            POLICY,
            classification="falsepositive",
            determination="clean",
            write_back=True,
            report=False,
        )
        ticket_id = ticket.id
    fake_sign_in(httpx_mock)
    _graph_accepts(httpx_mock, RESOLVED_ALERT)
    httpx_mock.add_response(
        url=f"{ALERTS_URL}/{GONE_ALERT}",
        method="PATCH",
        status_code=404,
        json=payload("mde__error_resource_not_found_404.json"),
    )
    connector = make_connector(monkeypatch, tmp_path, write_back=True)

    result = writeback.write_back_pending(sessions, tenant_id, connector)
    connector.close()

    assert (result.written, result.failed) == (1, 1)
    written, refused = _events(sessions, "alert.written_back", "alert.write_back_failed")
    assert (written.action, written.actor, written.tenant_id) == (
        "alert.written_back",
        "cli:sato",
        tenant_id,
    )
    assert written.detail == {
        "source_id": RESOLVED_ALERT,
        "edr_tenant": "t-acme",
        "status": "resolved",
        "classification": "falsepositive",
        "determination": "clean",
        "comment": f"edrtrial: resolved by the support desk (ticket #{ticket_id})",
        "ticket": ticket_id,
    }
    assert (refused.action, refused.actor) == ("alert.write_back_failed", "cli:sato")
    assert refused.detail["source_id"] == GONE_ALERT
    assert refused.detail["ticket"] == ticket_id
    assert "404" in refused.detail["error"]
    with sessions() as session:
        gone = session.scalars(select(Alert).where(Alert.source_id == GONE_ALERT)).one()
        assert (gone.write_back, gone.write_back_error) == (
            WriteBackState.FAILED,
            refused.detail["error"],
        )


def test_a_deferred_write_back_writes_nothing_and_audits_nothing(sessions):
    tenant_id = add_tenant(sessions, "acme")
    _alert(sessions, tenant_id, "a1", title="x", severity="low", write_back="pending")
    connector = Refusing({"a1": TransientError("429")})

    result = writeback.write_back_pending(sessions, tenant_id, connector)

    assert result.deferred == 1
    assert _events(sessions, "alert.written_back", "alert.write_back_failed") == []


def _test_alert_triaged(sessions, tenant_id: int) -> int:
    alert_id = _alert(
        sessions,
        tenant_id,
        TEST_ALERT,
        title="[Test Alert] Suspicious Powershell commandline",
        severity="informational",
        evidence={"command_lines": [DOCUMENTED_COMMAND]},
    )
    _triage(sessions, tenant_id)
    return alert_id


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (400, {"error": {"code": "BadRequest", "message": "comment too long"}}),
        (503, {"error": {"code": "ServiceUnavailable", "message": "try later"}}),
    ],
    ids=["comment-refused", "comment-unanswered"],
)
def test_a_verdict_accepted_before_its_comment_failed_is_audited_as_written_and_sent_once(
    sessions,
    httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    status: int,
    answer: dict[str, Any],
) -> None:
    tenant_id = add_tenant(sessions, "acme")
    alert_id = _test_alert_triaged(sessions, tenant_id)
    fake_sign_in(httpx_mock)
    url = f"{ALERTS_URL}/{TEST_ALERT}"
    httpx_mock.add_response(
        url=url, method="PATCH", json=payload("graph__update_alert_v2_response.json")
    )
    httpx_mock.add_response(url=f"{url}/comments", method="POST", status_code=status, json=answer)
    connector = make_connector(monkeypatch, tmp_path, write_back=True)

    first = writeback.write_back_pending(sessions, tenant_id, connector)
    again = writeback.write_back_pending(sessions, tenant_id, connector)
    connector.close()

    # Defender resolved the alert as a security test: that is what the log says, once.
    assert (first.written, first.failed, first.deferred) == (1, 0, 0)
    assert again == writeback.WriteBackResult()
    assert len(httpx_mock.get_requests(url=url, method="PATCH")) == 1
    assert len(httpx_mock.get_requests(url=f"{url}/comments", method="POST")) == 1
    [event] = _events(sessions, "alert.written_back", "alert.write_back_failed")
    assert (event.action, event.target) == ("alert.written_back", f"alert:{alert_id}")
    assert "error" not in event.detail
    assert str(status) in event.detail["comment_error"]
    with sessions() as session:
        alert = session.get_one(Alert, alert_id)
        assert (alert.write_back, alert.write_back_error) == (WriteBackState.DONE, "")


def test_the_desks_verdict_written_back_keeps_whom_the_operator_acted_for(sessions):
    tenant_id = add_tenant(sessions, "acme")
    _alert(sessions, tenant_id, "a1", title="Suspicious PowerShell command line", severity="medium")
    _triage(sessions, tenant_id)
    with transaction(sessions) as session, audit.acting_for("鈴木"):
        ticket = session.scalars(select(Ticket)).one()
        operator.resolve(
            session,
            ticket.id,
            SUMMARY,
            "cli:sato",
            NOW,
            POLICY,
            classification="falsepositive",
            determination="clean",
            write_back=True,
            report=False,
        )

    writeback.write_back_pending(sessions, tenant_id, Refusing({}))

    [event] = _events(sessions, "alert.written_back")
    assert (event.actor, event.on_behalf_of) == ("cli:sato", "鈴木")


class _VerdictChangedWhileSending(Refusing):
    """The desk gives the alert another verdict while the first one is on its way."""

    def __init__(self, sessions) -> None:
        super().__init__({})
        self.sessions = sessions
        self.sent: list[AlertUpdate] = []

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        if not self.sent:
            with transaction(self.sessions) as session:
                alert = session.scalars(select(Alert)).one()
                alert.classification, alert.determination = "truePositive", "malware"
        self.sent.append(update)


def test_a_verdict_given_while_another_is_sent_is_sent_in_its_turn(sessions):
    tenant_id = add_tenant(sessions, "acme")
    with transaction(sessions) as session:
        session.add(
            Alert(
                tenant_id=tenant_id,
                source="defender",
                source_id="a1",
                classification="falsePositive",
                determination="other",
                write_back="pending",
            )
        )
    connector = _VerdictChangedWhileSending(sessions)

    writeback.write_back_pending(sessions, tenant_id, connector)
    with sessions() as session:
        assert session.scalars(select(Alert)).one().write_back == WriteBackState.PENDING
    writeback.write_back_pending(sessions, tenant_id, connector)

    assert [u.classification for u in connector.sent] == ["falsePositive", "truePositive"]
    with sessions() as session:
        assert session.scalars(select(Alert)).one().write_back == WriteBackState.DONE
