"""A company joins mid-trial with 200 alerts in Defender, 100 of them already resolved: its
first poll, against the sandbox, with mail through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert, Company, Tenant, Ticket
from edrtrial.notify.report_mail import detection_report_for
from edrtrial.sandbox import Budgets, SandboxServer, SandboxWorld
from edrtrial.service import jobs
from edrtrial.timeutil import jst_date

from fakes import Crash
from sandbox_config import serving, settings, write_config
from test_outbox import Inbox, free_port, start_server

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
CONTACT, DESK = "it@sakura.example.jp", "desk@example.jp"
BACKLOG, RESOLVED = 200, 100


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """sakura's tenant with 200 alerts of the last 30 days, exactly 100 resolved in Defender."""
    world = SandboxWorld(seed=4, tenants=1, alert_interval_seconds=10**6, backlog_alerts=BACKLOG)
    world.set_budgets(Budgets(graph_per_minute=None, mde_per_minute=None, mde_per_hour=None))
    for n, alert in enumerate(world.alerts(SAKURA)):
        world.update_alert(SAKURA, alert["id"], {"status": "resolved" if n % 2 else "new"})
    with serving(world, tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) keeping every mail it accepts, and its port."""
    box = Inbox()
    controller = start_server(box, free_port())
    yield box, controller.port
    controller.stop()


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def to(box: Inbox, address: str) -> list[EmailMessage]:
    return [m for m in box.messages if m["To"] == address]


def text(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def test_a_company_joining_with_200_alerts_gets_one_summary_and_tickets_for_open_ones_only(
    tmp_path, now, sandbox, database_url, smtp, monkeypatch
):
    inbox, port = smtp
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    data["mail"]["smtp"] = {"host": "127.0.0.1", "port": port, "starttls": False}
    config = write_config(tmp_path / "config.toml", data, companies=1)
    cli(config, "db", "upgrade")
    in_defender = {a["id"]: a["status"] for a in sandbox.world.alerts(SAKURA)}
    assert sorted(in_defender.values()).count("resolved") == RESOLVED
    sessions = make_sessions(make_engine(database_url))

    # The process dies after the ingest, before the triage: the tenant stays on its first
    # poll, and nobody has been told anything.
    real = jobs._triage_all

    def dies(*args, **kwargs):
        raise Crash("killed between ingest and triage")

    monkeypatch.setattr(jobs, "_triage_all", dies)
    assert "killed between ingest and triage" in cli(config, "poll", code=1).output
    monkeypatch.setattr(jobs, "_triage_all", real)
    with sessions() as session:
        assert len(session.scalars(select(Alert)).all()) == BACKLOG
        assert session.scalars(select(Ticket)).all() == []
        assert session.scalars(select(Tenant.first_poll_done_at)).one() is None
    assert inbox.messages == []

    # The poll that completes: tickets for the open alerts, one mail each for company and desk.
    cli(config, "poll")
    [summary] = to(inbox, CONTACT)
    [desk] = to(inbox, DESK)
    assert summary["Subject"].startswith("【EDR体験】体験開始以降の検知のまとめ")
    assert f"確認した検知：{BACKLOG}件" in text(summary)
    assert f"Defenderですでに解決済みだった検知：{RESOLVED}件" in text(summary)
    assert f"履歴として記録：{RESOLVED}件" in text(desk)
    with sessions() as session:
        alerts = {a.source_id: a for a in session.scalars(select(Alert))}
        assert sorted(alerts) == sorted(in_defender)
        resolved = [a for a in alerts.values() if in_defender[a.source_id] == "resolved"]
        assert len(resolved) == RESOLVED
        assert all(a.ticket_id is None and a.triaged_at is not None for a in resolved)
        ticketed = [a for a in alerts.values() if a.ticket_id is not None]
        assert ticketed and all(in_defender[a.source_id] == "new" for a in ticketed)
        highs = [a for a in alerts.values() if a.severity == "high" and a.status == "new"]
        assert highs and all(a.ticket_id is not None for a in highs)
        p1 = session.scalars(select(Ticket.id).where(Ticket.priority == "P1")).all()
        for ticket_id in p1:  # every open P1 is named to the company and to the desk
            assert f"受付番号 #{ticket_id}（" in text(summary)[: text(summary).index("■ 運営")]
            assert f"#{ticket_id}　P1" in text(desk)

        # The resolved ones count in the detection report like any other detection.
        today = jst_date(now)
        company = session.scalars(select(Company)).one()
        report = detection_report_for(
            session,
            company.id,
            today - timedelta(days=31),
            today,
            now=now,
            settings=load_config(config).settings,
        )
        assert report.total == BACKLOG
        assert sum(c.count for c in report.severity_counts) == BACKLOG
        assert f"検知が{BACKLOG}件" in report.verdict

    # Polling again sends no second summary.
    cli(config, "poll")
    assert len(inbox.messages) == 2

    # The next attack is announced as before: its own notice to the company and the desk.
    device = sandbox.world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    sandbox.world.add_alerts(SAKURA, "hands_on_keyboard", 1, device_id=device, severity="high")
    cli(config, "poll")
    [notice] = [m for m in to(inbox, CONTACT) if m is not summary]
    assert "不審な動きを検知しました" in notice["Subject"]
    [ticket_notice] = [m for m in to(inbox, DESK) if m is not desk]
    assert "新規チケット" in ticket_notice["Subject"]
    assert len(inbox.messages) == 4
