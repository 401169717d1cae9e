"""The desk is told, once on its first channel, when a tenant is parked or keeps failing, and
once when it recovers; through a real SMTP server, never again per poll nor after a restart."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.config import load_config
from edrtrial.db import transaction
from edrtrial.errors import AuthError, ConfigError, TransientError
from edrtrial.ingest import health
from edrtrial.models import AuditEvent, OutboxMessage, Tenant
from edrtrial.service import alarms, jobs, scheduler
from edrtrial.service.runtime import Runtime

from fakes import FakeConnector, HandClock
from sandbox_config import settings, write_config

SAKURA = "sakura-seisakusho"


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps every mail it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.content)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@dataclass
class Service:
    """The config of a one-company programme whose secret file does not exist, mailing
    through the test's SMTP server; `open` starts the service's runtime on it (again)."""

    path: Path
    clock: HandClock
    data: dict[str, Any]
    runtimes: list[Runtime] = field(default_factory=list)

    def desk(self, **changes: Any) -> None:
        """Change the desk's settings in the config (before `open`)."""
        self.data["desk"] |= changes
        write_config(self.path, self.data, companies=0)

    def open(self) -> Runtime:
        rt = Runtime.open(load_config(self.path), clock=self.clock)
        self.runtimes.append(rt)
        return rt


@pytest.fixture
def service(tmp_path, now, engine, database_url, inbox) -> Iterator[Service]:
    data = settings(database_url, state_dir=tmp_path / "no-sandbox")
    data["mail"]["smtp"] = {
        "host": "127.0.0.1",
        "port": inbox[1],
        "starttls": False,
        "timeout_seconds": 5,
    }
    found = Service(write_config(tmp_path / "config.toml", data, companies=1), HandClock(now), data)
    yield found
    for rt in found.runtimes:
        rt.close()


def desk_mail(inbox: Inbox) -> list[EmailMessage]:
    return [m for m in inbox.messages if m["To"] == "desk@example.jp"]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def a_round(rt: Runtime, clock: HandClock) -> None:
    """What the service does in a minute: poll, the desk's clockwork, the outbox."""
    clock.now += timedelta(minutes=1)
    jobs.poll(rt)
    jobs.desk(rt)
    jobs.deliver_outbox(rt)


def test_a_bad_secret_parks_the_company_and_the_desk_is_told_once(service, inbox):
    rt = service.open()
    a_round(rt, service.clock)
    [tenant] = rt.tenants()
    assert tenant.state == "parked"
    [told] = desk_mail(inbox[0])
    text = text_of(told)
    assert SAKURA in told["Subject"] and "停止" in told["Subject"]
    assert f"edrtrial tenants resume {SAKURA}" in text
    assert "secret" in text  # the reason, as the tenant's state keeps it
    assert "JST" in text  # since when
    for _ in range(3):
        a_round(rt, service.clock)
    restarted = service.open()
    a_round(restarted, service.clock)
    assert len(desk_mail(inbox[0])) == 1
    with rt.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "alarm.raised"))
        [event] = [(e.actor, e.target, e.detail["problem"]) for e in events]
    assert event == ("desk", f"tenant:{tenant.id}", "parked")


def fixed(rt: Runtime) -> Runtime:
    """The company's secret is fixed: its tenant now answers (from memory)."""
    [tenant] = rt.tenants()
    rt._connectors[tenant.id] = FakeConnector()
    return rt


def test_the_desk_is_told_once_when_the_parked_company_polls_again(service, inbox):
    rt = service.open()
    a_round(rt, service.clock)
    fixed(rt)
    with transaction(rt.sessions) as session:
        health.resume_tenant(session, SAKURA, "cli:operator", service.clock())
    a_round(rt, service.clock)
    parked, recovered = desk_mail(inbox[0])
    assert recovered["Subject"].startswith("[復旧]") and SAKURA in recovered["Subject"]
    text = text_of(recovered)
    assert "再開しました" in text and "secret" in text  # what had stopped it
    assert "edrtrial tenants resume" not in text  # nothing left to do
    a_round(rt, service.clock)
    a_round(fixed(service.open()), service.clock)
    assert len(desk_mail(inbox[0])) == 2


class Failing(FakeConnector):
    """A tenant that answers 503 until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False

    def fetch_alerts(self, since):
        if not self.healthy:
            raise TransientError("503 Service Unavailable")
        return super().fetch_alerts(since)


def test_a_tenant_failing_longer_than_the_threshold_is_told_once_and_its_recovery_once(
    service, inbox
):
    service.desk(tenant_alert_minutes=20)
    rt = service.open()
    [tenant] = rt.tenants()
    failing = Failing()
    rt._connectors[tenant.id] = failing
    for _ in range(19):
        a_round(rt, service.clock)
    assert rt.tenants()[0].state == "failing"
    assert desk_mail(inbox[0]) == []  # retried alone so far
    for _ in range(10):
        a_round(rt, service.clock)
    [told] = desk_mail(inbox[0])
    assert told["Subject"] == "[要対応] テナント接続障害 株式会社さくら製作所（sakura-seisakusho）"
    text = text_of(told)
    assert "503 Service Unavailable" in text and "連続失敗：" in text
    assert f"edrtrial poll --company {SAKURA}" in text
    failing.healthy = True
    for _ in range(40):  # the breaker's pause runs out, the next poll succeeds
        a_round(rt, service.clock)
    assert rt.tenants()[0].state == "active"
    assert [m["Subject"][:4] for m in desk_mail(inbox[0])] == ["[要対応", "[復旧]"]


def test_only_the_desk_s_first_channel_is_told(service, inbox):
    service.desk(
        channels=[
            {"name": "duty", "kind": "mail", "to": "duty@example.jp"},
            {"name": "managers", "kind": "mail", "to": "managers@example.jp"},
        ]
    )
    a_round(service.open(), service.clock)
    assert [m["To"] for m in inbox[0].messages] == ["duty@example.jp"]


class Refused(FakeConnector):
    """A tenant whose consent was withdrawn, saying so in words an attacker chose."""

    def fetch_alerts(self, since):
        raise AuthError("consent withdrawn\n対応：不要です\x1b[2J", "grant consent again")


def test_the_reason_in_the_desk_s_notice_stays_text_on_its_line(service, inbox):
    rt = service.open()
    [tenant] = rt.tenants()
    rt._connectors[tenant.id] = Refused()
    a_round(rt, service.clock)
    [told] = desk_mail(inbox[0])
    text = text_of(told)
    assert "\x1b" not in text
    assert not any(line.startswith("対応：不要です") for line in text.splitlines())
    assert "consent withdrawn␊対応：不要です" in text
    assert f"edrtrial tenants resume {SAKURA}" in text


def test_a_job_failing_again_and_again_is_told_once_and_its_recovery_once(
    service, tmp_path, monkeypatch
):
    relay = tmp_path / "relay.secret"
    service.data["mail"]["smtp"] |= {"username": "edr", "password": f"file:{relay}"}
    write_config(service.path, service.data, companies=0)
    rt = service.open()
    [tenant] = rt.tenants()
    rt._connectors[tenant.id] = FakeConnector()
    monkeypatch.setattr(scheduler, "_runtime", rt)

    def alarms() -> list[tuple[str, str]]:
        with rt.sessions() as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "desk-alarm")
                .order_by(OutboxMessage.id)
            ).all()
            return [(m.recipient, m.subject) for m in rows]

    for _ in range(5):  # the relay's password file is missing: no mail leaves
        service.clock.now += timedelta(minutes=1)
        with pytest.raises(ConfigError):
            scheduler.run_job("outbox")
        scheduler.run_job("desk")
    assert alarms() == [("desk@example.jp", "[要対応] ジョブ失敗 outbox")]
    relay.write_text("s3cret\n", encoding="utf-8")
    for _ in range(3):
        service.clock.now += timedelta(minutes=1)
        scheduler.run_job("outbox")
        scheduler.run_job("desk")
    assert alarms()[1:] == [("desk@example.jp", "[復旧] ジョブ回復 outbox")]


def overlapping_desk_passes(monkeypatch: pytest.MonkeyPatch, *rts: Runtime) -> list[object]:
    """Each runtime's desk pass at once (`serve`'s and one run by hand), both having read what
    the desk was told before either writes; what each returned or raised."""
    meeting = threading.Barrier(len(rts), timeout=20)
    read = alarms._told

    def read_together(session: Session) -> object:
        found = read(session)
        meeting.wait()
        return found

    monkeypatch.setattr(alarms, "_told", read_together)
    results: list[object] = [None] * len(rts)

    def desk_pass(n: int) -> None:
        try:
            results[n] = jobs.desk(rts[n])
        except Exception as err:
            results[n] = err

    threads = [threading.Thread(target=desk_pass, args=(n,)) for n in range(len(rts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(alarms, "_told", read)
    return results


def test_two_desk_passes_at_once_tell_the_desk_once_and_both_go_on(service, inbox, monkeypatch):
    rt, by_hand = service.open(), service.open()
    service.clock.now += timedelta(minutes=1)
    jobs.poll(rt)  # the bad secret parks the company
    results = overlapping_desk_passes(monkeypatch, rt, by_hand)
    # Neither pass fails on the other's alarm: the one that lost goes on to its escalations.
    assert all(isinstance(r, jobs.DeskOutcome) for r in results), results
    jobs.deliver_outbox(rt)
    assert len(desk_mail(inbox[0])) == 1
    fixed(rt)
    fixed(by_hand)
    with transaction(rt.sessions) as session:
        health.resume_tenant(session, SAKURA, "cli:operator", service.clock())
    service.clock.now += timedelta(minutes=1)
    jobs.poll(rt)
    results = overlapping_desk_passes(monkeypatch, rt, by_hand)
    assert all(isinstance(r, jobs.DeskOutcome) for r in results), results
    jobs.deliver_outbox(rt)
    assert [m["Subject"][:4] for m in desk_mail(inbox[0])] == ["[要対応", "[復旧]"]
    with rt.sessions() as session:
        told = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.action.like("alarm.%"))
            .order_by(AuditEvent.id)
        )
        assert list(told) == ["alarm.raised", "alarm.cleared"]  # each audited once too


def test_a_tenant_already_failing_before_the_upgrade_is_told_once_it_fails_long_enough(
    service, inbox
):
    # 0009 leaves `state_since` empty for a tenant failing at the upgrade; each failed poll
    # moves its last poll on, so that cannot stand in for how long it has been failing.
    service.desk(tenant_alert_minutes=20)
    rt = service.open()
    [tenant] = rt.tenants()
    with transaction(rt.sessions) as session:
        row = session.get_one(Tenant, tenant.id)
        row.state, row.state_reason, row.failures = "failing", "503 Service Unavailable", 1
        row.state_since, row.last_poll_at = None, service.clock()
    rt._connectors[tenant.id] = Failing()
    for _ in range(40):
        a_round(rt, service.clock)
    assert rt.tenants()[0].state == "failing"
    [told] = desk_mail(inbox[0])
    assert told["Subject"].startswith("[要対応] テナント接続障害")


def test_a_company_resumed_and_parked_again_for_another_reason_is_told_again(service, inbox):
    rt = service.open()
    a_round(rt, service.clock)  # parked: the secret file is missing
    [tenant] = rt.tenants()
    rt._connectors[tenant.id] = Refused()  # the secret is fixed, but consent was withdrawn
    with transaction(rt.sessions) as session:
        health.resume_tenant(session, SAKURA, "cli:operator", service.clock())
    a_round(rt, service.clock)  # parked again before the desk's next pass
    a_round(rt, service.clock)
    first, again = desk_mail(inbox[0])
    assert first["Subject"] == again["Subject"]  # [要対応] テナント停止 …
    assert "secret" in text_of(first)
    assert "consent withdrawn" in text_of(again)  # what stops it now
    a_round(service.open(), service.clock)
    assert len(desk_mail(inbox[0])) == 2


def test_a_job_that_stopped_running_is_told_once_and_its_return_once(service, monkeypatch):
    rt = service.open()
    [tenant] = rt.tenants()
    rt._connectors[tenant.id] = FakeConnector()
    monkeypatch.setattr(scheduler, "_runtime", rt)
    scheduler.record_holder(rt.sessions, "desk-01:4242", service.clock.now)

    def minute(*names: str) -> None:
        service.clock.now += timedelta(minutes=1)
        scheduler.heartbeat(rt)
        for name in names:
            scheduler.run_job(name, SAKURA if name in ("poll", "inventory") else None)

    def alarms() -> list[str]:
        with rt.sessions() as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "desk-alarm")
                .order_by(OutboxMessage.id)
            ).all()
            return [m.subject for m in rows]

    minute("inventory", "poll", "desk", "outbox")
    for _ in range(20):  # the poll hangs; the heartbeat and every other job go on
        minute("desk", "outbox")
    assert alarms() == [f"[要対応] ジョブ停止 poll:{SAKURA}"]
    with rt.sessions() as session:
        told = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "desk-alarm")
        ).one()
        assert f"poll of {SAKURA} has not run for 10 min (every 30 s)" in told.body_text
    for _ in range(3):
        minute("poll", "desk", "outbox")
    assert alarms()[1:] == [f"[復旧] ジョブ再開 poll:{SAKURA}"]
