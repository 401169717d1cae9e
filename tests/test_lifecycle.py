"""Offboarding: one task per device of an ended, undecided trial; sent once; always audited."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.base import ActionStatus
from edrtrial.db import transaction
from edrtrial.devices.offboarding import (
    cancel_moot_offboarding,
    execute_offboarding,
    offboarding_plan,
    offboarding_progress,
    plan_offboarding,
    refresh_offboarding,
)
from edrtrial.errors import ApiRefused, ConnectorError
from edrtrial.models import AuditEvent, Company, Device, ResponseAction, Tenant, Trial

from fakes import FakeConnector

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def company(session: Session, key: str, end: date, decision: str, platforms: list[str]) -> int:
    c = Company(key=key, name=key, contact_email=f"{key}@example.jp")
    session.add(c)
    session.flush()
    t = Tenant(company_id=c.id, connector="fake", external_id=f"tenant-{key}")
    session.add(t)
    session.add(Trial(company_id=c.id, starts_on=date(2026, 8, 1), ends_on=end, decision=decision))
    session.flush()
    for n, platform in enumerate(platforms):
        session.add(
            Device(
                tenant_id=t.id,
                source_id=f"{key}-{n}",
                name=f"pc-{n}.{key}",
                os_platform=platform,
                in_inventory=True,
            )
        )
    session.flush()
    return t.id


@pytest.fixture
def tenants(sessions: sessionmaker[Session]) -> dict[str, int]:
    with transaction(sessions) as session:
        return {
            "ended": company(
                session,
                "ended",
                date(2026, 10, 31),
                "undecided",
                ["Windows11", "Windows10", "macOS"],
            ),
            "leaving": company(session, "leaving", date(2026, 11, 21), "offboard", ["Windows11"]),
            "continues": company(
                session, "continues", date(2026, 10, 31), "continue", ["Windows11"]
            ),
            "running": company(session, "running", date(2026, 11, 30), "undecided", ["Windows11"]),
        }


def test_tasks_are_planned_for_every_device_of_ended_trials_only_and_only_once(sessions, tenants):
    with transaction(sessions) as session:
        first = plan_offboarding(session, date(2026, 11, 22), NOW)
    with transaction(sessions) as session:
        second = plan_offboarding(session, date(2026, 11, 22), NOW)
    assert len(first) == 4 and second == []
    with sessions() as session:
        rows = offboarding_progress(session)
        assert sorted({r.company_key for r in rows}) == ["ended", "leaving"]
        assert all(r.status == "planned" for r in rows)
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.planned")
        ).all()
        assert len(audits) == 4


def test_the_last_trial_day_is_still_a_trial_day(sessions, tenants):
    with transaction(sessions) as session:
        planned = plan_offboarding(session, date(2026, 11, 21), NOW)
    assert {t.tenant_id for t in planned} == {tenants["ended"]}


def test_executing_sends_windows_once_and_hands_macos_over_as_manual_work(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    connector = FakeConnector(tenant_id="tenant-ended")
    execute_offboarding(sessions, tenants["ended"], connector, "operator-a", lambda: NOW)
    execute_offboarding(sessions, tenants["ended"], connector, "operator-a", lambda: NOW)
    assert sorted(d for d, _ in connector.started) == ["ended-0", "ended-1"]
    with sessions() as session:
        statuses = {r.device_name: r.status for r in offboarding_progress(session, "ended")}
        assert statuses == {
            "pc-0.ended": "pending",
            "pc-1.ended": "pending",
            "pc-2.ended": "manual",
        }
        manual = session.scalar(select(ResponseAction).where(ResponseAction.status == "manual"))
        assert manual is not None and "offboarding script" in manual.detail
        actors = {
            a.actor
            for a in session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action.in_(["offboarding.sent", "offboarding.manual"])
                )
            )
        }
        assert actors == {"operator-a"}


def test_executing_one_tenant_never_touches_another(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    connector = FakeConnector(tenant_id="tenant-leaving")
    execute_offboarding(sessions, tenants["leaving"], connector, "op", lambda: NOW)
    assert [d for d, _ in connector.started] == ["leaving-0"]


def test_a_connector_for_another_tenant_is_refused_before_anything_is_sent(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    wrong = FakeConnector(tenant_id="tenant-leaving")
    with pytest.raises(ConnectorError, match="refusing to offboard"):
        execute_offboarding(sessions, tenants["ended"], wrong, "op", lambda: NOW)
    assert wrong.started == []
    with sessions() as session:
        assert {r.status for r in offboarding_progress(session, "ended")} == {"planned"}


def test_a_task_another_operator_claimed_is_not_sent_again(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
        [task] = session.scalars(
            select(ResponseAction).where(ResponseAction.tenant_id == tenants["leaving"])
        ).all()
        task.status = "sending"  # claimed by a concurrent `offboarding --execute`
    connector = FakeConnector(tenant_id="tenant-leaving")
    execute_offboarding(sessions, tenants["leaving"], connector, "op", lambda: NOW)
    assert connector.started == []


def test_following_an_action_to_its_end_is_audited(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    connector = FakeConnector(tenant_id="tenant-leaving")
    execute_offboarding(sessions, tenants["leaving"], connector, "op", lambda: NOW)
    connector.statuses["action-1"] = ActionStatus.FAILED
    assert refresh_offboarding(sessions, tenants["leaving"], connector, NOW) == 1
    assert refresh_offboarding(sessions, tenants["leaving"], connector, NOW) == 0
    with sessions() as session:
        assert [r.status for r in offboarding_progress(session, "leaving")] == ["failed"]
        assert (
            session.scalar(
                select(AuditEvent.action).where(AuditEvent.action == "offboarding.failed")
            )
            == "offboarding.failed"
        )


class RefusingConnector(FakeConnector):
    """An EDR that answers every new action with a refusal."""

    def start_action(self, device_source_id, kind, comment):
        self.started.append((device_source_id, kind))
        raise ApiRefused("the device is not onboarded any more", status=400)


def test_an_offboarding_the_edr_refuses_goes_back_to_planned_with_its_reason(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    connector = RefusingConnector(tenant_id="tenant-leaving")
    assert execute_offboarding(sessions, tenants["leaving"], connector, "op", lambda: NOW) == []
    with sessions() as session:
        [row] = offboarding_progress(session, "leaving")
        assert row.status == "planned"
        assert "send refused, can be retried" in row.detail
        assert "not onboarded any more" in row.detail
        failed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.failed")
        ).all()
        assert [(e.actor, "not onboarded" in e.detail["error"]) for e in failed] == [("op", True)]


def _decide(sessions, tenant_id: int, **trial) -> None:
    """The company's trial as it is now (a decision or an end that changed after planning)."""
    with transaction(sessions) as session:
        company_id = session.get_one(Tenant, tenant_id).company_id
        row = session.scalars(select(Trial).where(Trial.company_id == company_id)).one()
        for name, value in trial.items():
            setattr(row, name, value)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"decision": "continue"}, "decided to continue"),
        ({"ends_on": date(2026, 12, 31)}, "the trial runs until 2026-12-31"),
    ],
)
def test_a_task_planned_earlier_is_cancelled_at_send_time_when_it_no_longer_fits(
    sessions, tenants, change, reason
):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    _decide(sessions, tenants["ended"], **change)
    connector = FakeConnector(tenant_id="tenant-ended")
    assert execute_offboarding(sessions, tenants["ended"], connector, "op", lambda: NOW) == []
    assert connector.started == []
    with sessions() as session:
        rows = offboarding_progress(session, "ended")
        assert {r.status for r in rows} == {"cancelled"}  # macOS too: no manual uninstall
        assert all(reason in r.detail for r in rows)
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.cancelled")
        ).all()
        assert len(audits) == 3
        assert all(e.actor == "op" and reason in e.detail["reason"] for e in audits)


def test_a_changed_decision_cancels_only_that_companys_planned_tasks_with_the_source(
    sessions, tenants
):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    execute_offboarding(
        sessions, tenants["leaving"], FakeConnector(tenant_id="tenant-leaving"), "op", lambda: NOW
    )
    _decide(sessions, tenants["ended"], decision="continue")
    _decide(sessions, tenants["leaving"], decision="continue")  # its task is already sent
    with transaction(sessions) as session:
        cancelled = cancel_moot_offboarding(session, NOW, source="/etc/edrtrial/config.toml")
    assert len(cancelled) == 3
    with sessions() as session:
        statuses = {r.company_key: r.status for r in offboarding_progress(session)}
        assert statuses == {"ended": "cancelled", "leaving": "pending"}
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.cancelled")
        ).all()
        assert {(e.actor, e.detail["source"], e.detail["company"]) for e in audits} == {
            ("trial-lifecycle", "/etc/edrtrial/config.toml", "ended")
        }


def test_a_company_that_leaves_after_all_gets_its_devices_planned_again(sessions, tenants):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    _decide(sessions, tenants["ended"], decision="continue")
    with transaction(sessions) as session:
        cancel_moot_offboarding(session, NOW)
    _decide(sessions, tenants["ended"], decision="offboard")
    with transaction(sessions) as session:
        again = plan_offboarding(session, date(2026, 11, 22), NOW)
    with transaction(sessions) as session:
        assert plan_offboarding(session, date(2026, 11, 22), NOW) == []
    assert len(again) == 3 and {t.tenant_id for t in again} == {tenants["ended"]}
    connector = FakeConnector(tenant_id="tenant-ended")
    execute_offboarding(sessions, tenants["ended"], connector, "op", lambda: NOW)
    assert sorted(d for d, _ in connector.started) == ["ended-0", "ended-1"]


def test_the_confirmation_names_the_company_its_decision_its_trial_end_and_the_devices(
    sessions, tenants
):
    with transaction(sessions) as session:
        plan_offboarding(session, date(2026, 11, 22), NOW)
    with sessions() as session:
        plan = offboarding_plan(session, tenants["ended"], NOW)
        assert plan.not_due is None
        assert plan.question("tenant-ended") == (
            "Uninstall the EDR from 3 device(s) of ended "
            "(decision: undecided, trial ended 2026-10-31, tenant tenant-ended)?"
        )
    _decide(sessions, tenants["ended"], decision="continue")
    with sessions() as session:
        assert "decided to continue" in str(
            offboarding_plan(session, tenants["ended"], NOW).not_due
        )
