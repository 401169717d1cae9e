"""A company that joins mid-trial: its first poll reads everything since the trial start, and
must not flood the desk or the company.

Until a tenant's first complete poll (ingest and triage of all it brought) has committed,
alerts Defender already resolved are stored as history (in the reports, no ticket, nothing
sent), open ones are triaged as usual, and the company and the desk each get one summary
instead of a notice per ticket. A crash midway keeps the tenant on its first poll; a repeat
never sends a summary twice. Every test runs on the `sessions` database (PostgreSQL in CI).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from signatures import DOCUMENTED_COMMAND
from sqlalchemy import select, text

from edrtrial.config import load_config
from edrtrial.connectors.base import AlertRecord, DeviceRef, Evidence
from edrtrial.db import _alembic_config, make_engine
from edrtrial.errors import AuthError
from edrtrial.ingest import health
from edrtrial.models import Alert, OutboxMessage, ResponseAction, Tenant, Ticket
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import Stamp

from fakes import Crash, FakeConnector, HandClock
from sandbox_config import settings, write_config

SAKURA = "sakura-seisakusho"  # in its trial since 60 days ago; Japanese contact
AOZORA = "aozora-design"  # in its trial; automatic isolation agreed; English contact


@pytest.fixture
def runtime(tmp_path, now, engine, database_url):
    path = write_config(tmp_path / "config.toml", settings(database_url))
    clock = HandClock(now)
    rt = Runtime.open(load_config(path), clock=clock)
    yield rt, clock
    rt.close()


def connect(rt: Runtime, key: str) -> tuple[int, FakeConnector]:
    [tenant] = rt.tenants(key)
    connector = FakeConnector(tenant_id=tenant.external_id)
    rt._connectors[tenant.id] = connector
    return tenant.id, connector


def alert(
    n: int,
    at: datetime,
    *,
    severity: str = "high",
    status: str = "new",
    category: str = "Ransomware",
    title: str = "",
) -> AlertRecord:
    """Alert n on device pc-n, in an incident of its own (so one ticket each)."""
    return AlertRecord(
        source_id=f"a{n:03}",
        title=title or f"{category} activity {n}",
        severity=severity,
        status=status,
        category=category,
        last_update_at=Stamp.of(at),
        created_at=at,
        incident_source_id=f"i{n:03}",
        devices=(DeviceRef(f"dev{n:03}", f"pc-{n:03}"),),
    )


def backlog(connector: FakeConnector, now: datetime) -> dict[str, list[str]]:
    """Ten days of history: P1 and P2 alerts still open, others Defender already resolved.

    The P2s are the oldest, so a list in time order would show them first.
    """
    kinds = {
        "p2-open": [(n, "medium", "new", "Execution") for n in range(1, 4)],
        "p1-open": [(n, "high", "new", "Ransomware") for n in range(4, 7)],
        "p1-in-progress": [(7, "high", "inProgress", "CredentialAccess")],
        "resolved": [(n, s, "resolved", "Ransomware") for n, s in ((8, "high"), (9, "medium"))]
        + [(n, "low", "resolved", "Malware") for n in range(10, 14)],
    }
    ids: dict[str, list[str]] = {}
    for kind, rows in kinds.items():
        for n, severity, status, category in rows:
            record = alert(
                n,
                now - timedelta(days=10, hours=-n),
                severity=severity,
                status=status,
                category=category,
            )
            connector.alerts[record.source_id] = record
            ids.setdefault(kind, []).append(record.source_id)
    return ids


def outbox(rt: Runtime, tenant_id: int) -> list[OutboxMessage]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.tenant_id == tenant_id)
                .order_by(OutboxMessage.id)
            )
        )


def stored(rt: Runtime, tenant_id: int) -> dict[str, Alert]:
    with rt.sessions() as session:
        rows = session.scalars(select(Alert).where(Alert.tenant_id == tenant_id))
        return {a.source_id: a for a in rows}


def tickets(rt: Runtime, tenant_id: int) -> list[Ticket]:
    with rt.sessions() as session:
        return list(
            session.scalars(select(Ticket).where(Ticket.tenant_id == tenant_id).order_by(Ticket.id))
        )


def first_poll_done(rt: Runtime, tenant_id: int) -> datetime | None:
    with rt.sessions() as session:
        return session.get_one(Tenant, tenant_id).first_poll_done_at


def test_a_first_poll_keeps_resolved_alerts_as_history_and_sends_one_summary_each(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    ids = backlog(connector, clock.now)

    [outcome] = jobs.poll(rt, SAKURA)

    assert outcome.error == "" and outcome.new_alerts == 13
    alerts = stored(rt, tenant_id)
    assert len(alerts) == 13
    # Resolved in Defender: stored, triaged as history, no ticket.
    for source_id in ids["resolved"]:
        assert alerts[source_id].ticket_id is None and alerts[source_id].triaged_at is not None
    assert outcome.triage.history == len(ids["resolved"])
    # Open ones are triaged as usual: one ticket each, P1 for the high ones.
    opened = tickets(rt, tenant_id)
    ticketed = sorted(s for s, a in alerts.items() if a.ticket_id is not None)
    assert ticketed == sorted(ids["p2-open"] + ids["p1-open"] + ids["p1-in-progress"])
    priorities = {t.id: t.priority for t in opened}
    assert sorted(priorities.values()) == ["P1"] * 4 + ["P2"] * 3
    assert all(t.ack_due_at is not None for t in opened)  # the deadlines still run

    # One summary to the company, one to the desk: no notice per ticket.
    messages = outbox(rt, tenant_id)
    assert sorted(m.kind for m in messages) == ["company-first-poll", "desk-first-poll"]
    company = next(m for m in messages if m.kind == "company-first-poll")
    desk = next(m for m in messages if m.kind == "desk-first-poll")
    assert company.recipient == "it@sakura.example.jp" and desk.recipient == "desk@example.jp"

    # The company reads its programme's words, the open P1s first (the older P2s are not
    # the company's business: the playbook tells it only of P1s), and the counts.
    assert "【EDR体験" in company.subject and "山田 太郎 様" in company.body_text
    assert "インシデント対応窓口" in company.body_text
    p1 = [t.id for t in opened if t.priority == "P1"]
    p2 = [t.id for t in opened if t.priority == "P2"]
    for ticket_id in p1:
        assert f"#{ticket_id}" in company.body_text
    for ticket_id in p2:
        assert f"#{ticket_id}" not in company.body_text
    assert "13件" in company.body_text  # everything read since the trial start
    assert "6件" in company.body_text  # already resolved in Defender

    # The desk: counts by priority, every ticket (P1 before P2), the history.
    body = desk.body_text
    assert "P1：4件" in body and "P2：3件" in body and "履歴として記録：6件" in body
    positions = [body.index(f"#{t}　") for t in p1 + p2]
    assert max(positions[:4]) < min(positions[4:])
    assert "sakura-seisakusho" in body
    assert "隔離：pc-004（proposed）" in body  # no automatic isolation agreed: a proposal
    # and how to approve it, as the ticket's own notice would say
    approve = f"提案を承認して隔離する：edrtrial ticket isolate {alerts['a004'].ticket_id}"
    assert approve in body
    assert body.count("edrtrial ticket isolate") == 4  # one per P1 proposing an isolation

    with rt.sessions() as session:
        assert session.get_one(Tenant, tenant_id).first_poll_done_at == clock.now


def test_after_the_first_poll_notices_go_per_ticket_as_before(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    backlog(connector, clock.now)
    jobs.poll(rt, SAKURA)
    before = {m.id for m in outbox(rt, tenant_id)}

    clock.now += timedelta(minutes=5)
    fresh = alert(50, clock.now)
    connector.alerts[fresh.source_id] = fresh
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == "" and outcome.triage.tickets_opened == 1
    new = [m for m in outbox(rt, tenant_id) if m.id not in before]
    assert sorted(m.kind for m in new) == ["company-notice", "desk-notice"]
    # A resolved alert now is an alert like any other: triaged by the playbook as today.
    late = alert(51, clock.now, status="resolved")
    connector.alerts[late.source_id] = late
    clock.now += timedelta(minutes=5)
    jobs.poll(rt, SAKURA)
    assert stored(rt, tenant_id)["a051"].ticket_id is not None

    # Polling again never repeats a summary.
    jobs.poll(rt, SAKURA)
    kinds = [m.kind for m in outbox(rt, tenant_id)]
    assert kinds.count("company-first-poll") == 1 and kinds.count("desk-first-poll") == 1


def test_a_crash_between_ingest_and_triage_keeps_the_tenant_on_its_first_poll(runtime, monkeypatch):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    ids = backlog(connector, clock.now)
    real = jobs._triage_all
    crashes = iter([True])

    def dies_once(*args, **kwargs):
        if next(crashes, False):
            raise Crash("died after the ingest, before the triage")
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "_triage_all", dies_once)
    [outcome] = jobs.poll(rt, SAKURA)
    assert "died after the ingest" in outcome.error
    assert len(stored(rt, tenant_id)) == 13 and tickets(rt, tenant_id) == []
    assert outbox(rt, tenant_id) == [] and first_poll_done(rt, tenant_id) is None

    clock.now += timedelta(minutes=1)
    [outcome] = jobs.poll(rt, SAKURA)  # the cursor is past the backlog: nothing is read again
    assert outcome.error == "" and outcome.new_alerts == 0
    alerts = stored(rt, tenant_id)
    assert all(alerts[s].ticket_id is None for s in ids["resolved"])
    kinds = sorted(m.kind for m in outbox(rt, tenant_id))
    assert kinds == ["company-first-poll", "desk-first-poll"]
    assert first_poll_done(rt, tenant_id) == clock.now


def test_a_crash_midway_through_the_triage_sends_one_summary_of_the_whole_backlog(
    runtime, monkeypatch
):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    backlog(connector, clock.now)
    monkeypatch.setattr(jobs, "TRIAGE_BATCH", 4)  # four batches, oldest alerts first
    real = jobs.triage_pending
    calls = {"n": 0}

    def dies_in_the_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("died in the third batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "triage_pending", dies_in_the_third_batch)
    [outcome] = jobs.poll(rt, SAKURA)
    assert "died in the third batch" in outcome.error
    early = tickets(rt, tenant_id)
    assert early, "the first two batches committed their tickets"
    assert outbox(rt, tenant_id) == [] and first_poll_done(rt, tenant_id) is None

    clock.now += timedelta(minutes=1)
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == ""
    everything = tickets(rt, tenant_id)
    assert len(everything) == 7
    messages = outbox(rt, tenant_id)
    assert sorted(m.kind for m in messages) == ["company-first-poll", "desk-first-poll"]
    desk = next(m for m in messages if m.kind == "desk-first-poll").body_text
    company = next(m for m in messages if m.kind == "company-first-poll").body_text
    for ticket in everything:  # the crashed run's tickets are in the summaries too
        assert f"#{ticket.id}　" in desk
        assert (f"#{ticket.id}" in company) == (ticket.priority == "P1")
    assert "履歴として記録：6件" in desk

    jobs.poll(rt, SAKURA)  # and a repeat sends nothing more
    assert len(outbox(rt, tenant_id)) == 2


def test_a_p1_of_the_backlog_still_isolates_where_the_company_agreed_and_escalates(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, AOZORA)  # agreed to automatic isolation; English
    ransomware = alert(1, clock.now - timedelta(hours=3), title="Ransomware encrypted files")
    old = alert(2, clock.now - timedelta(days=3), status="resolved")
    connector.alerts |= {ransomware.source_id: ransomware, old.source_id: old}

    jobs.poll(rt, AOZORA)
    with rt.sessions() as session:
        planned = session.scalars(
            select(ResponseAction).where(ResponseAction.tenant_id == tenant_id)
        ).all()
    assert [(a.kind, a.status) for a in planned] == [("isolate", "planned")]
    assert stored(rt, tenant_id)["a002"].ticket_id is None  # resolved: no isolation either
    [ticket] = tickets(rt, tenant_id)
    [company] = [m for m in outbox(rt, tenant_id) if m.kind == "company-first-poll"]
    assert "Dear Emily Clark," in company.body_text and f"#{ticket.id}" in company.body_text
    assert (
        company.subject == "[EDR trial] Detections since your trial started (1 case to know about)"
    )
    names = ("合同会社あおぞらデザイン", "EDR体験 サポートデスク", "平日 9:00〜17:00")
    english = company.body_text
    for name in names:
        english = english.replace(name, "")
    assert not re.findall(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]", english)
    [desk] = [m for m in outbox(rt, tenant_id) if m.kind == "desk-first-poll"]
    assert f"#{ticket.id}　P1" in desk.body_text and "隔離：pc-001（planned）" in desk.body_text
    assert "edrtrial ticket isolate" not in desk.body_text  # planned: nothing to approve

    # Nobody acknowledges the P1: it climbs the channel list like any other ticket.
    assert ticket.ack_due_at is not None
    clock.now = ticket.ack_due_at + timedelta(minutes=1)
    assert jobs.desk(rt).escalated == 1


def test_a_backlog_of_resolved_alerts_only_tells_the_desk_and_not_the_company(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    for n in range(1, 4):
        record = alert(n, clock.now - timedelta(days=n), status="resolved")
        connector.alerts[record.source_id] = record
    jobs.poll(rt, SAKURA)
    assert tickets(rt, tenant_id) == []
    [desk] = outbox(rt, tenant_id)
    assert desk.kind == "desk-first-poll" and "履歴として記録：3件" in desk.body_text


@pytest.mark.parametrize(
    ("key", "calm", "promise"),
    [
        (SAKURA, "対応は不要です", "検知レポート"),
        (AOZORA, "nothing for you to do", "detection report"),
    ],
)
def test_the_company_summary_promises_no_report_for_alerts_already_resolved(
    runtime, key, calm, promise
):
    """The weekly detection report covers the last seven days only: history older than
    that is in no automatic mail, so the summary must not promise one."""
    rt, clock = runtime
    tenant_id, connector = connect(rt, key)
    for record in (
        alert(1, clock.now - timedelta(hours=1)),  # open: the company hears of it
        alert(2, clock.now - timedelta(days=30), status="resolved"),
        alert(3, clock.now - timedelta(days=20), status="resolved"),
    ):
        connector.alerts[record.source_id] = record
    jobs.poll(rt, key)
    [company] = [m for m in outbox(rt, tenant_id) if m.kind == "company-first-poll"]
    [history] = [line for line in company.body_text.splitlines() if "Defender" in line]
    assert "2" in history and calm in history
    assert promise not in company.body_text


def test_a_first_poll_that_finds_nothing_completes_quietly(runtime):
    rt, clock = runtime
    tenant_id, _ = connect(rt, SAKURA)
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == "" and outbox(rt, tenant_id) == []
    assert first_poll_done(rt, tenant_id) == clock.now


def test_the_summaries_show_alert_text_as_text(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    hostile = alert(
        1, clock.now - timedelta(hours=1), title="Ransomware\n状態：解決済み\u202efdp.exe"
    )
    named = replace(hostile, devices=(DeviceRef("dev001", "pc-1\n端末：ほかの会社\u202e\x1b[2J"),))
    connector.alerts[named.source_id] = named
    jobs.poll(rt, SAKURA)
    messages = {m.kind: m.body_text for m in outbox(rt, tenant_id)}
    for body in (messages["desk-first-poll"], messages["company-first-poll"]):
        assert "\n状態：解決済み" not in body and "\n端末：ほかの会社" not in body
        assert not [c for c in body if c in "\u202e\x1b"]
        assert "pc-1" in body
    assert "Ransomware" in messages["desk-first-poll"]


# --- the store: migration 0010 ----------------------------------------------------------------


def test_migration_counts_tenants_already_polled_as_past_their_first_poll(database_url):
    eng = make_engine(database_url)
    cfg = _alembic_config(eng)
    command.upgrade(cfg, "0009")
    with eng.begin() as conn:
        for number, key in enumerate(("polled", "succeeded", "new"), start=1):
            conn.execute(
                text(
                    "INSERT INTO company (id, key, name, contact_name, contact_email, language,"
                    " planned_seats, seat_cap, auto_isolation, created_at)"
                    " VALUES (:n, :key, 'K', '', 'a@b.jp', 'ja', 1, 300, false, '2026-01-01')"
                ),
                {"n": number, "key": key},
            )
            success = "'2026-01-02 03:04:05'" if key == "succeeded" else "NULL"
            conn.execute(
                text(
                    "INSERT INTO tenant (id, company_id, connector, external_id, state,"
                    f" state_reason, failures, last_success_at) VALUES (:n, :n, 'defender',"
                    f" :key, 'active', '', 0, {success})"
                ),
                {"n": number, "key": key},
            )
        conn.execute(
            text(
                "INSERT INTO poll_cursor (tenant_id, stream, position, position_stamp, updated_at)"
                " VALUES (1, 'alerts', '2026-01-01 00:00:00', 1, '2026-01-01 05:00:00')"
            )
        )
    command.upgrade(cfg, "0010")
    with eng.connect() as conn:
        done = dict(
            conn.execute(
                text(
                    "SELECT c.key, t.first_poll_done_at IS NOT NULL FROM tenant t"
                    " JOIN company c ON c.id = t.company_id"
                )
            ).all()
        )
    assert done == {"polled": True, "succeeded": True, "new": False}
    command.downgrade(cfg, "0009")
    command.upgrade(cfg, "0010")
    eng.dispose()


def test_an_alert_kept_as_history_that_defender_reopens_later_gets_a_ticket(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    old = alert(1, clock.now - timedelta(days=3), status="resolved")
    connector.alerts[old.source_id] = old
    jobs.poll(rt, SAKURA)
    assert stored(rt, tenant_id)["a001"].ticket_id is None  # history
    before = {m.id for m in outbox(rt, tenant_id)}

    # A week later an analyst reopens it in Defender: nothing else about it changed.
    clock.now += timedelta(days=7)
    connector.alerts[old.source_id] = replace(
        old, status="inProgress", last_update_at=Stamp.of(clock.now)
    )
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == "" and outcome.updated_alerts == 1
    reopened = stored(rt, tenant_id)["a001"]
    assert reopened.ticket_id is not None, "a reopened alert is no longer history"
    new = [m.kind for m in outbox(rt, tenant_id) if m.id not in before]
    assert "desk-notice" in new


def test_a_first_poll_parked_midway_by_an_auth_error_is_still_first_once_resumed(
    runtime, monkeypatch
):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    ids = backlog(connector, clock.now)
    real = connector.fetch_alerts
    refused = iter([True])

    def refused_after_two_pages(since):
        for n, page in enumerate(real(since)):
            if n == 2 and next(refused, False):
                raise AuthError("the client secret has expired")
            yield page

    monkeypatch.setattr(connector, "fetch_alerts", refused_after_two_pages)
    [outcome] = jobs.poll(rt, SAKURA)
    assert "expired" in outcome.error
    assert 0 < len(stored(rt, tenant_id)) < 13
    assert outbox(rt, tenant_id) == [] and first_poll_done(rt, tenant_id) is None

    clock.now += timedelta(hours=5)
    with rt.sessions.begin() as session:
        health.resume_tenant(session, SAKURA, "operator", clock.now)
    rt._connectors[tenant_id] = connector  # the operator renewed the secret
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == ""
    alerts = stored(rt, tenant_id)
    assert len(alerts) == 13
    assert all(alerts[s].ticket_id is None for s in ids["resolved"])
    kinds = sorted(m.kind for m in outbox(rt, tenant_id))
    assert kinds == ["company-first-poll", "desk-first-poll"]
    desk = next(m for m in outbox(rt, tenant_id) if m.kind == "desk-first-poll").body_text
    assert "取り込み：13件" in desk and "履歴として記録：6件" in desk
    assert first_poll_done(rt, tenant_id) == clock.now


def test_an_alert_kept_as_history_that_defender_amends_while_resolved_stays_history(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    old = alert(1, clock.now - timedelta(days=3), status="resolved")
    connector.alerts[old.source_id] = old
    jobs.poll(rt, SAKURA)
    before = {m.id for m in outbox(rt, tenant_id)}

    # The next day Defender merges it into another incident; it is still resolved.
    clock.now += timedelta(days=1)
    connector.alerts[old.source_id] = replace(
        old, incident_source_id="i999", last_update_at=Stamp.of(clock.now)
    )
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == "" and outcome.updated_alerts == 1
    amended = stored(rt, tenant_id)["a001"]
    assert amended.incident_source_id == "i999" and amended.ticket_id is None
    assert tickets(rt, tenant_id) == []
    assert [m.kind for m in outbox(rt, tenant_id) if m.id not in before] == []


def test_a_backlog_p1_the_playbook_sends_to_the_duty_channel_is_told_there_too(
    tmp_path, now, engine, database_url
):
    rules = tmp_path / "duty.toml"
    rules.write_text(
        'description = "Ransomware pages the duty officer."\n'
        '[[rules]]\nname = "ransomware-duty"\ncategory = "Ransomware"\nescalate = "duty"\n',
        encoding="utf-8",
    )
    shipped = Path(__file__).resolve().parents[1] / "playbooks" / "default.toml"
    data = settings(database_url, playbooks=[str(rules), str(shipped)])
    data["desk"]["channels"] = [
        {"name": "desk", "kind": "mail", "to": "desk@example.jp"},
        {"name": "duty", "kind": "mail", "to": "duty@example.jp"},
    ]
    clock = HandClock(now)
    rt = Runtime.open(load_config(write_config(tmp_path / "config.toml", data)), clock=clock)
    try:
        tenant_id, connector = connect(rt, SAKURA)
        for record in (
            alert(1, clock.now - timedelta(hours=1)),  # ransomware, open: a P1 for duty
            alert(2, clock.now - timedelta(days=2), status="resolved"),
        ):
            connector.alerts[record.source_id] = record
        jobs.poll(rt, SAKURA)
        desk = [m for m in outbox(rt, tenant_id) if m.kind == "desk-first-poll"]
        assert sorted(m.recipient for m in desk) == ["desk@example.jp", "duty@example.jp"]
        assert len({m.body_text for m in desk}) == 1  # the same one summary on each

        jobs.poll(rt, SAKURA)  # and never twice
        assert len([m for m in outbox(rt, tenant_id) if m.kind == "desk-first-poll"]) == 2
    finally:
        rt.close()


def test_a_history_alert_amended_before_the_first_poll_completes_is_counted_once(
    runtime, monkeypatch
):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    ids = backlog(connector, clock.now)
    for n, status in ((20, "new"), (21, "resolved")):  # the onboarding test, twice
        test = alert(n, clock.now - timedelta(days=9), severity="informational", status=status)
        connector.alerts[test.source_id] = replace(
            test,
            title="[Test Alert] Suspicious Powershell commandline",
            category="Execution",
            detection_source="microsoftDefenderForEndpoint",
            evidence=Evidence(command_lines=(DOCUMENTED_COMMAND,)),
        )
    real = jobs.finish_first_poll
    crashes = iter([True])

    def dies_once(*args, **kwargs):
        if next(crashes, False):
            raise Crash("died after the triage, before the mark")
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "finish_first_poll", dies_once)
    [outcome] = jobs.poll(rt, SAKURA)
    assert "before the mark" in outcome.error and first_poll_done(rt, tenant_id) is None

    # Meanwhile Defender merges two resolved alerts into another incident, and reopens one.
    clock.now += timedelta(minutes=1)
    amended, reopened = ids["resolved"][0], ids["resolved"][1]
    for source_id in (*ids["resolved"][2:4], amended, "a020", "a021"):
        record = connector.alerts[source_id]
        connector.alerts[source_id] = replace(
            record, incident_source_id="i999", last_update_at=Stamp.of(clock.now)
        )
    record = connector.alerts[reopened]
    connector.alerts[reopened] = replace(record, status="new", last_update_at=Stamp.of(clock.now))
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == ""
    alerts = stored(rt, tenant_id)
    assert alerts[reopened].ticket_id is not None and alerts[amended].ticket_id is None
    desk = next(m for m in outbox(rt, tenant_id) if m.kind == "desk-first-poll").body_text
    company = next(m for m in outbox(rt, tenant_id) if m.kind == "company-first-poll").body_text
    # Seven resolved (a test among them), one reopened since; the open test suppressed.
    assert "取り込み：15件" in desk and "履歴として記録：6件" in desk
    assert "抑止（テストなど）：1件" in desk
    assert "確認した検知：15件" in company
    assert "Defenderですでに解決済みだった検知：6件" in company


def test_a_resolved_test_kept_as_history_that_turns_out_an_attack_gets_its_ticket(runtime):
    rt, clock = runtime
    tenant_id, connector = connect(rt, SAKURA)
    test = replace(
        alert(1, clock.now - timedelta(days=3), severity="informational", status="resolved"),
        title="[Test Alert] Suspicious Powershell commandline",
        category="Execution",
        detection_source="microsoftDefenderForEndpoint",
        evidence=Evidence(command_lines=(DOCUMENTED_COMMAND,)),
    )
    connector.alerts[test.source_id] = test
    jobs.poll(rt, SAKURA)
    kept = stored(rt, tenant_id)["a001"]
    assert kept.ticket_id is None and kept.suppressed_reason

    # Defender adds a dump of LSASS to it, still resolved: not a test, and nobody looked.
    clock.now += timedelta(days=1)
    connector.alerts[test.source_id] = replace(
        test,
        severity="high",
        category="CredentialAccess",
        mitre_techniques=("T1003.001",),
        evidence=Evidence(command_lines=(DOCUMENTED_COMMAND, "rundll32 comsvcs.dll MiniDump")),
        last_update_at=Stamp.of(clock.now),
    )
    jobs.poll(rt, SAKURA)
    assert stored(rt, tenant_id)["a001"].ticket_id is not None
