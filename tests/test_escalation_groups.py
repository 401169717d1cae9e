"""Escalations must not flood the desk: a pass that escalates many tickets of one company to
one channel at one level sends one grouped notice for them, each ticket still escalated.

A company that joins mid-trial can bring dozens of P1 tickets at once; nobody acknowledges
them in time, and each would page the next channel on its own, again at every level. Each
ticket keeps its own escalation (level, channel, next deadline, audit record); the next
channel reads one notice per company, channel and level instead, never twice, and a ticket
is never in both a single and a grouped notice of the same level. A few tickets are still
escalated one notice each. Every test runs on the `sessions` database (PostgreSQL in CI).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from edrtrial.config import load_config
from edrtrial.connectors.base import AlertRecord, DeviceRef
from edrtrial.db import transaction
from edrtrial.desk import escalation
from edrtrial.models import AuditEvent, OutboxMessage, Ticket
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import Stamp

from fakes import FakeConnector, HandClock
from sandbox_config import settings, write_config
from test_outbox import Inbox, free_port, start_server
from test_webhooks import HOOK_TOKEN, TEAMS_TOKEN, block_text, receiver, secrets  # noqa: F401

SAKURA = "sakura-seisakusho"  # in its trial; no automatic isolation: isolations are proposals
HOSTILE_TITLE = "Ransomware [click](https://evil.example/x) **now** <b>x</b> " + "長" * 400


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) keeping every mail it accepts."""
    box = Inbox()
    controller = start_server(box, free_port())
    yield box, controller.port
    controller.stop()


@pytest.fixture
def runtime(tmp_path, now, engine, database_url, inbox):
    """The sample programme whose desk escalates desk (mail) -> duty (Teams) -> hook (signed
    webhook) -> manager (mail, through a real SMTP server)."""
    data = settings(database_url)
    data["mail"]["smtp"] = {"host": "127.0.0.1", "port": inbox[1], "starttls": False}
    data["desk"]["channels"] = [
        {"name": "desk", "kind": "mail", "to": "desk@example.jp"},
        {"name": "duty", "kind": "teams", "url": "env:EDRTRIAL_TEST_TEAMS_URL"},
        {
            "name": "hook",
            "kind": "webhook",
            "url": "env:EDRTRIAL_TEST_HOOK_URL",
            "signing_secret": "env:EDRTRIAL_TEST_HOOK_SECRET",
        },
        {"name": "manager", "kind": "mail", "to": "manager@example.jp"},
    ]
    clock = HandClock(now)
    rt = Runtime.open(load_config(write_config(tmp_path / "config.toml", data)), clock=clock)
    yield rt, clock
    rt.close()


def first_poll(rt: Runtime, clock: HandClock, p1: int, p2: int = 0, title: str = "") -> int:
    """A company joining with `p1` open ransomware alerts (P1) and `p2` open executions (P2),
    each on its own device and incident; returns the tenant id after its first poll."""
    [tenant] = rt.tenants(SAKURA)
    connector = FakeConnector(tenant_id=tenant.external_id)
    rt._connectors[tenant.id] = connector
    for n in range(1, p1 + p2 + 1):
        at = clock.now - timedelta(days=5, minutes=-n)
        high = n <= p1
        connector.alerts[f"a{n:03}"] = AlertRecord(
            source_id=f"a{n:03}",
            title=title or f"{'Ransomware' if high else 'Execution'} activity {n}",
            severity="high" if high else "medium",
            status="new",
            category="Ransomware" if high else "Execution",
            last_update_at=Stamp.of(at),
            created_at=at,
            incident_source_id=f"i{n:03}",
            devices=(DeviceRef(f"dev{n:03}", f"pc-{n:03}"),),
        )
    [outcome] = jobs.poll(rt, SAKURA)
    assert outcome.error == ""
    return tenant.id


def tickets(rt: Runtime, tenant_id: int) -> list[Ticket]:
    with rt.sessions() as session:
        return list(
            session.scalars(select(Ticket).where(Ticket.tenant_id == tenant_id).order_by(Ticket.id))
        )


def escalations(rt: Runtime) -> list[OutboxMessage]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind.in_(("desk-escalation", "desk-escalation-group")))
                .order_by(OutboxMessage.id)
            )
        )


def escalated_audit(rt: Runtime, tenant_id: int) -> list[AuditEvent]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.tenant_id == tenant_id, AuditEvent.action == "ticket.escalated")
                .order_by(AuditEvent.id)
            )
        )


def listed(message: OutboxMessage) -> list[int]:
    """The tickets a notice lists, in its order (a grouped notice: one line each)."""
    return [int(n) for n in re.findall(r"^#(\d+)　", message.body_text, re.M)]


def past_deadlines(rt: Runtime, tenant_id: int) -> datetime:
    due = [t.ack_due_at for t in tickets(rt, tenant_id) if t.ack_due_at is not None]
    return max(due) + timedelta(minutes=1)


def test_forty_backlog_p1s_each_escalate_and_each_channel_reads_one_notice_per_level(runtime):
    rt, clock = runtime
    tenant_id = first_poll(rt, clock, p1=40)
    opened = tickets(rt, tenant_id)
    assert [t.priority for t in opened] == ["P1"] * 40
    ids = [t.id for t in opened]

    # Nobody acknowledges: every ticket misses its deadline and climbs to duty (Teams).
    missed = {t.id: t.ack_due_at for t in opened}
    clock.now = past_deadlines(rt, tenant_id)
    assert jobs.desk(rt).escalated == 40
    climbed = tickets(rt, tenant_id)
    assert {(t.escalation_level, t.channel) for t in climbed} == {(1, "duty")}
    assert all(t.ack_due_at is not None and t.ack_due_at > clock.now for t in climbed)
    audit = escalated_audit(rt, tenant_id)
    assert sorted(int(e.target.split(":")[1]) for e in audit) == ids
    assert {(e.detail["level"], e.detail["channel"]) for e in audit} == {(1, "duty")}
    assert {e.detail["missed"] for e in audit} == {m.isoformat() for m in missed.values()}

    # One notice on duty for the forty, not forty.
    [group] = escalations(rt)
    assert (group.channel, group.recipient, group.kind) == (
        "teams",
        "duty",
        "desk-escalation-group",
    )
    body = group.body_text
    assert "40件" in group.subject and "レベル1" in group.subject
    assert "株式会社さくら製作所" in body and "sakura-seisakusho" in body
    assert "P1：40件" in body
    assert "通知先：duty" in body
    assert "無料体験：期間中" in body
    # The thirty most urgent listed (the oldest deadline first), the rest a count and where.
    assert listed(group) == ids[:30]
    assert "ほか 10件：edrtrial tickets --company sakura-seisakusho --state new" in body
    # Each listed ticket carries its proposed isolation's approval.
    assert "edrtrial ticket isolate" in body and "pc-001" in body
    assert f"edrtrial ticket isolate {ids[0]}" in body

    # A re-run, or a second desk job, sends nothing more.
    assert jobs.desk(rt).escalated == 0
    assert len(escalations(rt)) == 1

    # The next deadlines pass: one notice on each next channel, at each level, the last
    # channel reminded once more.
    for level, channel in ((2, "hook"), (3, "manager"), (4, "manager"), (5, "manager")):
        clock.now = past_deadlines(rt, tenant_id)
        assert jobs.desk(rt).escalated == 40
        assert jobs.desk(rt).escalated == 0
        assert {(t.escalation_level, t.channel) for t in tickets(rt, tenant_id)} == {
            (level, channel)
        }
    notices = escalations(rt)
    assert [(m.channel, m.recipient, m.kind) for m in notices] == [
        ("teams", "duty", "desk-escalation-group"),
        ("webhook", "hook", "desk-escalation-group"),
        ("mail", "manager@example.jp", "desk-escalation-group"),
        ("mail", "manager@example.jp", "desk-escalation-group"),
        ("mail", "manager@example.jp", "desk-escalation-group"),
    ]
    assert [f"レベル{level}" in m.subject for level, m in enumerate(notices, 1)] == [True] * 5
    assert all(listed(m) == ids[:30] for m in notices)
    assert len(escalated_audit(rt, tenant_id)) == 200
    # The last level: no next deadline, the tickets wait in the queue, overdue.
    assert all(t.ack_due_at is None for t in tickets(rt, tenant_id))
    assert "次の確認期限：なし（最後のレベル" in notices[-1].body_text
    clock.now += timedelta(days=1)
    assert jobs.desk(rt).escalated == 0 and len(escalations(rt)) == 5
    # No ticket is both in a single notice and in a grouped one.
    assert not [m for m in notices if m.kind == "desk-escalation"]


def test_two_desk_jobs_never_tell_a_ticket_twice_at_one_level(runtime, monkeypatch):
    rt, clock = runtime
    tenant_id = first_poll(rt, clock, p1=40)
    ids = [t.id for t in tickets(rt, tenant_id)]
    # The second twenty missed their deadline five minutes after the first twenty.
    with transaction(rt.sessions) as session:
        for ticket in session.scalars(select(Ticket).where(Ticket.id.in_(ids[20:]))):
            assert ticket.ack_due_at is not None
            ticket.ack_due_at += timedelta(minutes=5)
    early = min(t.ack_due_at for t in tickets(rt, tenant_id) if t.ack_due_at) + timedelta(minutes=1)
    clock.now = past_deadlines(rt, tenant_id)
    real_move = escalation.move
    other_job: list[list[int]] = []

    def another_job_first(session, ticket, step, at, **values):
        # `run-job desk`, started when only the first twenty were overdue, writes first.
        if not other_job:
            monkeypatch.setattr(escalation, "move", real_move)
            with transaction(rt.sessions) as other:
                other_job.append(escalation.escalate_overdue(other, rt.policy, early))
        return real_move(session, ticket, step, at, **values)

    monkeypatch.setattr(escalation, "move", another_job_first)
    with transaction(rt.sessions) as session:
        assert escalation.escalate_overdue(session, rt.policy, clock.now) == ids[20:]
    assert other_job == [ids[:20]]

    notices = escalations(rt)
    assert [m.kind for m in notices] == ["desk-escalation-group"] * 2
    assert [sorted(listed(m)) for m in notices] == [ids[:20], ids[20:]]
    assert len({m.dedupe_key for m in notices}) == 2
    assert len(escalated_audit(rt, tenant_id)) == 40
    assert {t.escalation_level for t in tickets(rt, tenant_id)} == {1}


def test_a_grouped_notice_lists_p1s_before_p2s_and_counts_each_priority(runtime):
    rt, clock = runtime
    tenant_id = first_poll(rt, clock, p1=3, p2=3)
    by_priority = {t.id: t.priority for t in tickets(rt, tenant_id)}
    # Make every ticket due now: a P2's two hours and a P1's thirty minutes both pass.
    clock.now = past_deadlines(rt, tenant_id)
    assert jobs.desk(rt).escalated == 6
    [group] = escalations(rt)
    assert "P1：3件" in group.body_text and "P2：3件" in group.body_text
    order = [by_priority[i] for i in listed(group)]
    assert order == ["P1"] * 3 + ["P2"] * 3
    assert "ほか" not in group.body_text


def test_two_overdue_tickets_are_escalated_one_notice_each_as_before(runtime):
    rt, clock = runtime
    tenant_id = first_poll(rt, clock, p1=2)
    opened = tickets(rt, tenant_id)
    clock.now = past_deadlines(rt, tenant_id)
    assert jobs.desk(rt).escalated == 2
    notices = escalations(rt)
    assert [m.kind for m in notices] == ["desk-escalation"] * 2
    assert sorted(m.dedupe_key for m in notices) == sorted(
        f"escalation:ticket:{t.id}:0:1" for t in opened
    )
    for ticket, message in zip(opened, notices, strict=True):
        assert f"#{ticket.id}" in message.subject
    assert jobs.desk(rt).escalated == 0 and len(escalations(rt)) == 2


def test_a_grouped_notice_reaches_teams_webhook_and_mail_with_alert_text_as_text(
    runtime,
    inbox,
    receiver,  # noqa: F811
    secrets,  # noqa: F811
):
    rt, clock = runtime
    box, _ = inbox
    tenant_id = first_poll(rt, clock, p1=40, title=HOSTILE_TITLE)
    for _level in (1, 2, 3):  # duty (Teams), hook (webhook), manager (mail)
        clock.now = past_deadlines(rt, tenant_id)
        assert jobs.desk(rt).escalated == 40
        jobs.deliver_outbox(rt)
    notices = escalations(rt)
    assert [m.status for m in notices] == ["sent"] * 3
    shown_ids = listed(notices[0])
    assert len(shown_ids) == 30

    # Teams: one card, plain text runs only, whole (not cut), under Teams' size limit.
    [card_hit] = [h for h in receiver.hits if h.path == "/" + TEAMS_TOKEN]
    assert len(card_hit.body) < 28_000
    card = card_hit.json()["attachments"][0]["content"]["body"]
    assert {b["type"] for b in card} == {"RichTextBlock"}, "never markdown"
    card_text = "\n".join(block_text(b) for b in card)
    assert "Ransomware [click](https://evil.example/x) **now** <b>x</b>" in card_text
    assert "ほか 10件：edrtrial tickets --company sakura-seisakusho --state new" in card_text
    for ticket_id in shown_ids:
        assert f"#{ticket_id}　" in card_text

    # The signed webhook: one message, no chat markup (`<!channel>`, `<url|label>`) live.
    [hook_hit] = [h for h in receiver.hits if h.path == "/" + HOOK_TOKEN]
    hook = hook_hit.json()
    assert hook["id"] == notices[1].dedupe_key and hook["kind"] == "desk-escalation-group"
    assert "<" not in hook["subject"] + hook["text"]
    assert "&lt;b&gt;x&lt;/b&gt;" in hook["text"]

    # The manager's mailbox: one mail for the forty, the title as text, no control reaching it.
    [mail] = [m for m in box.messages if m["To"] == "manager@example.jp"]
    assert "40件" in str(mail["Subject"]) and "\n" not in str(mail["Subject"])
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    text = part.get_content()
    assert "Ransomware [click](https://evil.example/x) **now** <b>x</b>" in text
    assert max(len(line) for line in text.splitlines()) < 200  # long titles cut to a line
