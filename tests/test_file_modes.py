"""The store and written reports name companies, PCs and users: readable by the owner only."""

from __future__ import annotations

import getpass
import logging
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions, upgrade
from edrtrial.models import AuditEvent
from edrtrial.timeutil import jst_date

from sandbox_config import settings, write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): without care, new files would be world-readable."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_new_sqlite_store_and_its_folder_are_the_owners_only(tmp_path: Path) -> None:
    store = tmp_path / "var" / "data" / "edrtrial.db"

    engine = make_engine(f"sqlite:///{store}")
    upgrade(engine)
    with engine.connect() as connection:  # open, so SQLite's -wal and -shm files exist
        connection.exec_driver_sql("SELECT count(*) FROM company")
        modes = {p.name: mode(p) for p in store.parent.iterdir()}
    engine.dispose()

    assert mode(tmp_path / "var") == mode(store.parent) == 0o700
    assert modes == {"edrtrial.db": 0o600, "edrtrial.db-wal": 0o600, "edrtrial.db-shm": 0o600}


def test_an_existing_store_keeps_its_mode_and_a_shared_one_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "shared.db"
    make_engine(f"sqlite:///{store}").dispose()
    os.chmod(store, 0o640)  # the operator let a backup group read it

    with caplog.at_level(logging.WARNING, logger="edrtrial.files"):
        for _ in range(2):
            engine = make_engine(f"sqlite:///{store}")
            upgrade(engine)
            engine.dispose()

    assert mode(store) == 0o640
    [warning] = [r.getMessage() for r in caplog.records if r.name == "edrtrial.files"]
    assert warning.startswith(f"{store} can be read by others than its owner (mode 0640)")
    assert f"chmod 600 {store}" in warning


def test_a_private_store_says_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "edrtrial.db"
    make_engine(f"sqlite:///{store}").dispose()
    with caplog.at_level(logging.WARNING, logger="edrtrial.files"):
        make_engine(f"sqlite:///{store}").dispose()
    assert mode(store) == 0o600 and caplog.records == []


def test_a_written_report_is_the_owners_only_and_its_mail_is_audited_as_theirs(
    tmp_path: Path, now, database_url: str
) -> None:
    config = write_config(
        tmp_path / "config.toml", settings(database_url, mail_dir=tmp_path / "mail")
    )
    engine = make_engine(database_url)
    upgrade(engine)
    out = tmp_path / "reports" / "sakura" / "report.html"
    last = jst_date(now)
    first = last - timedelta(days=6)

    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(config),
            "report",
            "--company",
            "sakura-seisakusho",
            "--from",
            str(first),
            "--to",
            str(last),
            "--output",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    assert '<html lang="ja"' in out.read_text(encoding="utf-8")
    assert mode(out) == 0o600
    assert mode(out.parent) == mode(out.parent.parent) == 0o700
    with make_sessions(engine)() as session:
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.queued")
        ).all()
    engine.dispose()
    assert event.actor == f"cli:{getpass.getuser()}"
    assert event.detail["company"] == "sakura-seisakusho"
    assert event.detail["period"] == {"from": str(first), "to": str(last)}
    assert event.detail["kind"] == "detection_report"
    assert event.detail["recipients"] == ["it@sakura.example.jp"]


def test_rewriting_a_report_keeps_the_mode_its_owner_chose(tmp_path: Path) -> None:
    from edrtrial.files import write_private_text

    report = tmp_path / "report.html"
    write_private_text(report, "first")
    assert mode(report) == 0o600
    os.chmod(report, 0o644)

    write_private_text(report, "second")

    assert (report.read_text(encoding="utf-8"), mode(report)) == ("second", 0o644)


def test_mail_written_as_files_is_the_owners_only(tmp_path: Path) -> None:
    """Without SMTP, each mail is an .eml file: it names the company's PCs and users."""
    from email.message import EmailMessage

    from edrtrial.notify.mail import FileTransport

    outbox = tmp_path / "var" / "mail"
    message = EmailMessage()
    message["Subject"] = "端末の隔離について"
    message.set_content("pc-1")
    FileTransport(outbox).send(message)

    assert mode(tmp_path / "var") == mode(outbox) == 0o700
    assert [mode(p) for p in outbox.iterdir()] == [0o600]
