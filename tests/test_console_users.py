"""`edrtrial users`: the console's local accounts from the terminal, audited with the login
that ran each command, and what a person may then do and see in the console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.access import accounts
from edrtrial.access.roles import Permission, permissions_of
from edrtrial.cli.common import login_name
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, Cohort, ConsoleUser

from sandbox_config import settings, write_config


@pytest.fixture
def config(tmp_path: Path, database_url: str, sessions, now) -> Path:
    with transaction(sessions) as session:
        for key in ("c1", "c2"):
            session.add(Cohort(key=key, name=key, course="edr", capacity=10))
    return write_config(tmp_path / "config.toml", settings(database_url), companies=0)


def cli(config: Path, *args: str, code: int = 0, stdin: str | None = None) -> Result:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(config), *args], input=stdin)
    assert result.exit_code == code, result.output
    return result


def test_add_then_change_a_console_account_from_the_terminal(config, sessions):
    added = cli(
        config,
        "users",
        "add",
        "Sato",
        "--role",
        "operator",
        "--cohort",
        "c1",
        "--name",
        "佐藤 一郎",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    assert "console user sato added (operator)" in added.stdout
    with sessions() as session:
        user = accounts.get(session, "SATO")
        assert user.password_hash and "a long enough password" not in user.password_hash
        person = accounts.person(user)
        assert person.may(Permission.DEVICE_ACT) and not person.may(Permission.USERS_ADMIN)
        assert person.cohort_keys == ("c1",) and not person.scope.everything
    cli(config, "users", "passwd", "sato", "--password-stdin", stdin="another long password\n")
    cli(
        config,
        "users",
        "roles",
        "sato",
        "--role",
        "secretariat",
        "--role",
        "viewer",
        "--all-cohorts",
    )
    cli(config, "users", "disable", "sato")
    listed = json.loads(cli(config, "users", "list", "--json").stdout)
    assert listed == [{
        "username": "sato", "name": "佐藤 一郎", "roles": ["secretariat", "viewer"],
        "cohorts": [], "sign_in": "password", "disabled": True, "last_sign_in_at": None,
    }]  # fmt: skip
    with sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(e.action, e.actor, e.target) for e in events] == [
            (action, f"cli:{login_name()}", "user:sato")
            for action in ("users.add", "users.passwd", "users.roles", "users.disable")
        ]
        assert events[2].detail["was_cohorts"] == ["c1"] and events[2].detail["cohorts"] == []
        assert session.scalar(select(ConsoleUser.epoch)) == 4  # each change ended the sessions


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (("add", "x", "--role", "boss"), "a long enough password\n", "no role 'boss'"),
        (
            ("add", "x", "--role", "viewer", "--cohort", "c9"),
            "a long enough password\n",
            "no cohort 'c9' (cohorts: c1, c2)",
        ),
        (("add", "x", "--role", "viewer"), "short\n", "at least 12 characters"),
        (("add", "../x", "--role", "viewer"), "a long enough password\n", "username '../x'"),
        (("passwd", "nobody"), "a long enough password\n", "no console user 'nobody'"),
    ],
)
def test_a_wrong_account_command_says_what_in_one_line(config, args, stdin, said):
    result = cli(
        config,
        "users",
        *args,
        "--password-stdin" if args[0] in ("add", "passwd") else "",
        stdin=stdin,
        code=2,
    )
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_password_is_never_taken_from_the_command_line_without_a_terminal(config):
    result = cli(config, "users", "add", "x", "--role", "viewer", code=2, stdin="")
    assert "--password-stdin" in result.stderr


def test_the_second_account_of_a_name_is_refused(config):
    cli(
        config,
        "users",
        "add",
        "sato",
        "--role",
        "viewer",
        "--password-stdin",
        stdin="a long enough password\n",
    )
    again = cli(
        config,
        "users",
        "add",
        "ＳＡＴＯ",
        "--role",
        "viewer",
        "--password-stdin",
        stdin="a long enough password\n",
        code=2,
    )
    assert "console user 'sato' already exists" in again.stderr


def test_each_role_may_what_its_work_needs():
    assert Permission.DEVICE_ACT in permissions_of(["operator"])
    assert Permission.DEVICE_ACT not in permissions_of(["secretariat"])
    assert Permission.PROGRAMME_ACT in permissions_of(["secretariat"])
    assert permissions_of(["viewer"]) <= permissions_of(["operator"]) & permissions_of(
        ["secretariat"]
    )
    assert not {p for p in permissions_of(["viewer"]) if not p.value.endswith(".read")}
    assert permissions_of(["nonsense"]) == frozenset()


def test_the_sample_admin_s_password_file_goes_when_its_password_is_changed(config):
    """`serve --with-sandbox` writes the first account's password to a file; once changed,
    that file would only hold the old password."""
    from edrtrial.config import load_config
    from edrtrial.web.keys import sample_admin_file

    path = sample_admin_file(load_config(config))
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("admin", "sato"):
        cli(
            config,
            "users",
            "add",
            name,
            "--role",
            "admin",
            "--password-stdin",
            stdin="a long enough password\n",
        )
    path.write_text("username: admin\npassword: the first one\n", encoding="utf-8")
    changed = cli(
        config, "users", "passwd", "sato", "--password-stdin", stdin="another long one!\n"
    )
    assert path.is_file() and "removed" not in changed.stdout  # another account's change
    changed = cli(
        config, "users", "passwd", "admin", "--password-stdin", stdin="another long one!\n"
    )
    assert not path.exists() and f"{path} removed" in changed.stdout.replace("\n", "")
