"""The desk against the sandbox: an incident over two polls, isolation, resolution, write-back."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert, AuditEvent, OutboxMessage, ResponseAction, Ticket
from edrtrial.sandbox import SandboxServer
from edrtrial.timeutil import to_jst

from sandbox_config import sample_world, sandbox_config, serving

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its data made at the test's now (the sample trials are dated around it)."""
    with serving(sample_world(actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def mails_to(folder: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        if mail["To"] == address:
            found.append(mail)  # type: ignore[arg-type]
    return found


def body(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def test_incident_over_two_polls_is_one_ticket_isolated_once_and_resolved_back_into_defender(
    tmp_path, now, sandbox, database_url
):
    world = sandbox.world
    config = sandbox_config(tmp_path, sandbox, database_url, connection={"write_back": True})
    cli(config, "db", "upgrade")
    cli(config, "poll")  # the starting state: everything the sandbox already holds
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        tickets_before = {t.id for t in session.scalars(select(Ticket))}

    # An attack: two alerts of one new incident now, a third one in the next poll.
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    first = world.add_alerts(
        SAKURA, "hands_on_keyboard", 2, incident_id="new", device_id=device, severity="high"
    )
    incident = next(a["incidentId"] for a in world.alerts(SAKURA) if a["id"] == first[0])
    cli(config, "poll")
    world.add_alerts(
        SAKURA, "hands_on_keyboard", 1, incident_id=incident, device_id=device, severity="high"
    )
    cli(config, "poll")

    with sessions() as session:
        new = [t for t in session.scalars(select(Ticket)) if t.id not in tickets_before]
        assert [t.correlation_key for t in new] == [f"incident:{incident}"]
        ticket = new[0]
        alerts = session.scalars(select(Alert).where(Alert.ticket_id == ticket.id)).all()
        assert len(alerts) == 3
        assert ticket.priority == "P1" and ticket.state == "new"
        notices = session.scalars(
            select(OutboxMessage).where(OutboxMessage.dedupe_key.contains(f"ticket:{ticket.id}"))
        ).all()
        assert sorted(m.kind for m in notices) == ["company-notice", "desk-notice"]
    tid = str(ticket.id)
    assert len(mails_to(tmp_path / "mail", "it@sakura.example.jp")) >= 1

    # The operator acknowledges and isolates; the sandbox records exactly one isolation.
    cli(config, "ticket", "--by", "tanaka", "ack", tid)
    out = cli(config, "ticket", "--by", "tanaka", "isolate", tid, "--yes", "--wait", "20").output
    assert "succeeded" in out
    assert world.action_counts(SAKURA)[device] == {"Isolate": 1}
    assert world.is_isolated(SAKURA, device)
    again = cli(config, "ticket", "--by", "tanaka", "isolate", tid, "--yes", code=2)
    assert "already isolated" in again.output
    assert world.action_counts(SAKURA)[device] == {"Isolate": 1}
    shown = cli(config, "ticket", "show", tid).output
    assert "isolate" in shown and "succeeded" in shown and "tanaka" in shown
    isolation_mail = [
        m for m in mails_to(tmp_path / "mail", "it@sakura.example.jp") if "隔離" in body(m)
    ]
    assert isolation_mail, "the company is told its device was isolated"

    # Resolving needs the whole incident summary.
    refused = cli(config, "ticket", "resolve", tid, "--when", "11/22 10:00", code=2)
    assert "incident summary" in refused.output and "cause" in refused.output
    cli(
        config,
        "ticket",
        "--by",
        "tanaka",
        "resolve",
        tid,
        "--when",
        f"{to_jst(now):%Y年%m月%d日 %H:%M}頃",
        "--what",
        "遠隔操作による不審なサービスの実行",
        "--cause",
        "公開されていたリモートデスクトップへの不正ログイン",
        "--handling",
        "端末をネットワークから隔離し、パスワードを変更",
        "--effect",
        "ほかの端末への拡大は確認されていません",
        "--classification",
        "truePositive",
        "--determination",
        "malware",
    )
    # The verdict reached Defender for every alert of the incident (the write-back switch).
    in_defender = [a for a in world.alerts(SAKURA) if a.get("incidentId") == incident]
    assert len(in_defender) == 3
    assert {(a["status"], a["classification"]) for a in in_defender} == {
        ("resolved", "truePositive")
    }
    report = [
        m
        for m in mails_to(tmp_path / "mail", "it@sakura.example.jp")
        if "インシデントの原因" in body(m)
    ]
    assert len(report) == 1 and "公開されていたリモートデスクトップ" in body(report[0])

    with sessions() as session:
        done = session.get_one(Ticket, ticket.id)
        assert done.state == "resolved" and done.summary["effect"].startswith("ほかの端末")
        isolations = session.scalars(
            select(ResponseAction).where(
                ResponseAction.ticket_id == ticket.id,
                ResponseAction.kind == "isolate",
                ResponseAction.status != "superseded",
            )
        ).all()
        assert [a.status for a in isolations] == ["succeeded"]
        actions = {
            e.action
            for e in session.scalars(select(AuditEvent).where(AuditEvent.on_behalf_of == "tanaka"))
        }
        assert {"ticket.acknowledged", "isolate.planned", "ticket.resolved"} <= actions


def test_operator_commands_are_audited_and_a_declined_isolation_does_nothing(
    tmp_path, sandbox, database_url
):
    world = sandbox.world
    config = sandbox_config(tmp_path, sandbox, database_url)
    cli(config, "db", "upgrade")
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    world.add_alerts(SAKURA, "hands_on_keyboard", 1, device_id=device, severity="high")
    cli(config, "poll")
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        ticket = next(
            a.ticket
            for a in session.scalars(select(Alert).where(Alert.ticket_id.is_not(None)))
            if device in a.device_source_ids
        )
    assert ticket is not None
    tid = str(ticket.id)

    declined = CliRunner().invoke(
        main, ["--config", str(config), "ticket", "isolate", tid], input="n\n"
    )
    assert declined.exit_code == 0 and "nothing done" in declined.output
    assert device not in world.action_counts(SAKURA)

    cli(config, "ticket", "--by", "sato", "assign", tid, "tanaka")
    cli(config, "ticket", "--by", "tanaka", "start", tid)
    cli(config, "ticket", "--by", "tanaka", "note", tid, "電話で状況を確認")
    cli(config, "ticket", "--by", "tanaka", "notify", tid, "本日15時にお電話します。")
    cli(config, "ticket", "--by", "tanaka", "isolate", tid, "--yes", "--wait", "20")
    cli(config, "ticket", "--by", "tanaka", "release", tid, "--yes", "--wait", "20")
    assert world.action_counts(SAKURA)[device] == {"Isolate": 1, "Unisolate": 1}
    assert not world.is_isolated(SAKURA, device)
    reopen_refused = cli(config, "ticket", "reopen", tid, "--reason", "x", code=2)
    assert "is in_progress" in reopen_refused.output

    message = [
        m
        for m in mails_to(tmp_path / "mail", "it@sakura.example.jp")
        if "本日15時にお電話します。" in body(m)
    ]
    assert len(message) == 1 and f"#{tid}" in message[0]["Subject"]
    shown = cli(config, "ticket", "show", tid).output
    for expected in (
        "ticket.assigned",
        "ticket.in_progress",
        "電話で状況を確認",
        "ticket.company_notified",
        "release",
        "tanaka",
        "sato",
    ):
        assert expected in shown
