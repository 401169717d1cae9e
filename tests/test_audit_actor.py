"""Who did it: the audit log names the login that ran a command, and whom it acted for.

`ticket --by NAME` used to be written as the actor, so anyone could sign a step with any
name, the service's own included ("playbook", "edr"). The actor is now the operating-system
account; `--by` is kept beside it as `on_behalf_of`, and never as one of the service's names.
"""

from __future__ import annotations

import ast
import os
import pwd
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.audit import ACTOR_WIDTH, BEHALF_WIDTH, SYSTEM_ACTORS
from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert, AuditEvent, Ticket
from edrtrial.sandbox import SandboxServer

from sandbox_config import sample_world, sandbox_config, serving

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
SOURCE = Path(__file__).parents[1]
LOGIN = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    with serving(sample_world(), tmp_path / "sandbox") as server:
        yield server


@pytest.fixture(autouse=True)
def no_other_login(monkeypatch) -> None:
    """The command runs as itself: not through sudo, and with no terminal login to name."""
    monkeypatch.delenv("SUDO_USER", raising=False)

    def no_terminal() -> str:
        raise OSError("no controlling terminal")

    monkeypatch.setattr(os, "getlogin", no_terminal)


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def ticket(tmp_path: Path, sandbox: SandboxServer, database_url: str) -> tuple[Path, int]:
    """A config over the sandbox and one new ticket of sakura's (its id)."""
    config = sandbox_config(tmp_path, sandbox, database_url)
    cli(config, "db", "upgrade")
    world = sandbox.world
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    world.add_alerts(SAKURA, "hands_on_keyboard", 1, device_id=device, severity="high")
    cli(config, "poll")
    with make_sessions(make_engine(database_url))() as session:
        alert = next(
            a
            for a in session.scalars(select(Alert).where(Alert.ticket_id.is_not(None)))
            if device in a.device_source_ids
        )
        assert alert.ticket_id is not None
        return config, alert.ticket_id


def events(database_url: str, ticket_id: int) -> list[tuple[str, str, str]]:
    """The ticket's audit events as (action, actor, on_behalf_of), oldest first."""
    with make_sessions(make_engine(database_url))() as session:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target == f"ticket:{ticket_id}")
            .order_by(AuditEvent.id)
        )
        return [(e.action, e.actor, e.on_behalf_of) for e in rows]


def test_the_actor_is_the_login_that_ran_the_command_and_by_whom_it_acted_for(
    ticket, database_url, monkeypatch
):
    config, tid = ticket
    # $USER and $LOGNAME are anyone's to set: the actor comes from the process's user id.
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")

    cli(config, "ticket", "--by", "tanaka", "ack", str(tid))
    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-2:] == [
        ("ticket.acknowledged", f"cli:{LOGIN}", "tanaka"),
        ("ticket.note", f"cli:{LOGIN}", ""),
    ]
    assert "mallory" not in str(events(database_url, tid))
    history = cli(config, "ticket", "show", str(tid)).output
    assert re.search(rf"cli:{LOGIN} for tanaka\s+│ ticket\.acknowledged", history)
    assert re.search(rf"cli:{LOGIN}\s+│ note\s+│ text below", history)
    assert f"note by cli:{LOGIN}: called the contact" in history


@pytest.mark.parametrize(
    "claimed",
    [
        "playbook",
        "Playbook",
        " PLAY BOOK ",
        "ｐｌａｙｂｏｏｋ",  # fullwidth letters: NFKC makes them "playbook"
        "play\u200bbook",  # a zero-width space inside
        "edr",
        "Trial_Lifecycle",
        "trial lifecycle",
        "DESK",
    ],
)
def test_a_person_cannot_claim_a_system_actor(ticket, database_url, claimed):
    config, tid = ticket
    before = events(database_url, tid)

    refused = cli(config, "ticket", "--by", claimed, "ack", str(tid), code=2)

    [line] = refused.output.strip().splitlines()
    assert line.startswith("error: --by ") and "the service's own name" in line
    assert events(database_url, tid) == before, "nothing was done"
    with make_sessions(make_engine(database_url))() as session:
        assert session.get_one(Ticket, tid).state == "new"


# `actor="x"`, `actor: str = "x"` (a default) and `SYNC_ACTOR = "x"` (a named constant).
WRITTEN_ACTOR = re.compile(
    r"\b(?:actor|requested_by|who|[A-Z_]*ACTOR)\s*(?::\s*str\s*)?=\s*\"([^\"]+)\""
)


def test_every_actor_the_service_writes_is_a_reserved_system_actor():
    """A new job writing `actor="..."` must list its name, or a person could claim it."""
    written: set[str] = set()
    for path in (SOURCE / "edrtrial").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(WRITTEN_ACTOR, text))
    assert written, "the scan found the service's actors"
    assert written <= SYSTEM_ACTORS, sorted(written - SYSTEM_ACTORS)


def test_audit_events_written_before_the_upgrade_keep_their_actor(database_url):
    """0008 adds `on_behalf_of` empty to earlier events; its downgrade drops it again."""
    from alembic import command
    from sqlalchemy import text

    from edrtrial.db import _alembic_config, make_engine

    eng = make_engine(database_url)
    cfg = _alembic_config(eng)
    command.upgrade(cfg, "0004")
    with eng.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_event (at, actor, action, target, detail)"
                " VALUES ('2026-11-01', 'tanaka', 'ticket.acknowledged', 'ticket:1', '{}')"
            )
        )
    command.upgrade(cfg, "0008")
    with eng.connect() as conn:
        row = conn.execute(text("SELECT actor, on_behalf_of FROM audit_event")).one()
    assert tuple(row) == ("tanaka", "")
    command.downgrade(cfg, "0004")
    with eng.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_event")).scalar_one() == "tanaka"
    eng.dispose()


def test_every_step_of_a_by_command_is_audited_for_whom_it_acted(ticket, database_url):
    """Acknowledging, isolating and messaging the company for tanaka all say so."""
    config, tid = ticket
    before = len(events(database_url, tid))
    cli(config, "ticket", "--by", "tanaka", "ack", str(tid))
    cli(config, "ticket", "--by", "tanaka", "isolate", str(tid), "--yes", "--wait", "3")
    cli(config, "ticket", "--by", "tanaka", "notify", str(tid), "please call us")

    steps = events(database_url, tid)[before:]
    people = [step for step in steps if step[1] not in SYSTEM_ACTORS]
    assert "ticket.company_notified" in [action for action, _, _ in people], steps
    assert people and all(behalf == "tanaka" for _, _, behalf in people), steps


def test_only_the_audit_module_builds_audit_events():
    """Every event goes through `audit.record`, which adds whom a person acted for."""
    builders = []
    for path in (SOURCE / "edrtrial").rglob("*.py"):
        if path.name == "audit.py" and path.parent.name == "edrtrial":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "AuditEvent":
                builders.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert not builders, builders


def test_acknowledging_for_someone_gives_them_the_ticket(ticket, database_url):
    config, tid = ticket
    cli(config, "ticket", "--by", "tanaka", "ack", str(tid))

    with make_sessions(make_engine(database_url))() as session:
        assert session.get_one(Ticket, tid).assignee == "tanaka"
    assert events(database_url, tid)[-1] == ("ticket.acknowledged", f"cli:{LOGIN}", "tanaka")


@pytest.mark.parametrize("over", [1, 55])
def test_a_name_too_long_for_the_audit_log_is_refused_on_one_line(ticket, database_url, over):
    config, tid = ticket
    name = "t" * (BEHALF_WIDTH + over)
    before = events(database_url, tid)

    by = cli(config, "ticket", "--by", name, "ack", str(tid), code=2).output
    assigned = cli(config, "ticket", "assign", str(tid), name, code=2).output

    for refused in (by, assigned):
        assert len(refused.strip().splitlines()) == 1 and "at most" in refused, refused
    assert events(database_url, tid) == before


@pytest.mark.parametrize(
    ("sudo_user", "expected"),
    [
        ("sato", f"cli:sato (as {LOGIN})"),
        (LOGIN, f"cli:{LOGIN}"),  # sudo to oneself
        ("s" * 300, "cli:" + "s" * (ACTOR_WIDTH - len(f"cli: (as {LOGIN})")) + f" (as {LOGIN})"),
    ],
)
def test_a_step_run_through_sudo_names_the_person_and_the_account(
    ticket, database_url, monkeypatch, sudo_user, expected
):
    """`sudo -u <service account> edrtrial …`: the audit keeps who ran sudo beside it."""
    config, tid = ticket
    monkeypatch.setenv("SUDO_USER", sudo_user)

    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-1] == ("ticket.note", expected, "")


def test_a_login_on_the_terminal_other_than_the_account_is_kept(ticket, database_url, monkeypatch):
    """`su edrtrial` then a command: the terminal's login names the person."""
    config, tid = ticket
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setattr(os, "getlogin", lambda: "suzuki")

    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-1] == ("ticket.note", f"cli:suzuki (as {LOGIN})", "")


def test_a_sudo_user_typed_by_hand_does_not_name_someone_else(ticket, database_url, monkeypatch):
    """No sudo: the terminal's login is the account itself, and `SUDO_USER=tanaka` was typed."""
    config, tid = ticket
    monkeypatch.setattr(os, "getlogin", lambda: LOGIN)
    monkeypatch.setenv("SUDO_USER", "tanaka")

    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-1] == ("ticket.note", f"cli:{LOGIN}", "")


def test_the_terminal_login_names_the_person_before_sudo_user(ticket, database_url, monkeypatch):
    """The login records name who sits at the terminal; an environment variable does not."""
    config, tid = ticket
    monkeypatch.setattr(os, "getlogin", lambda: "suzuki")
    monkeypatch.setenv("SUDO_USER", "tanaka")

    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-1] == ("ticket.note", f"cli:suzuki (as {LOGIN})", "")


def test_a_step_run_as_another_account_names_the_terminal_login(ticket, database_url, monkeypatch):
    """`sudo -u <service account>` from the operator's terminal: the terminal's login is
    the person, the account the command runs as is beside it, `SUDO_USER` is not read."""
    config, tid = ticket
    other = next(p for p in pwd.getpwall() if p.pw_name != LOGIN)
    monkeypatch.setattr(os, "getuid", lambda: other.pw_uid)
    monkeypatch.setattr(os, "getlogin", lambda: LOGIN)
    monkeypatch.setenv("SUDO_USER", "tanaka")

    cli(config, "ticket", "note", str(tid), "called the contact")

    assert events(database_url, tid)[-1] == (
        "ticket.note",
        f"cli:{LOGIN} (as {other.pw_name})",
        "",
    )
