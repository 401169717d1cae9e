"""`edrtrial serve --with-sandbox` as a real process: tickets arrive; SIGINT stops it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from edrtrial.db import make_engine
from edrtrial.models import OutboxMessage, ServiceLock, Ticket

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
EDRTRIAL = str(Path(sys.executable).parent / "edrtrial")

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def count(engine, column) -> int:
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count(column))) or 0
    except (OperationalError, ProgrammingError):
        return 0


def test_serve_with_the_sandbox_opens_tickets_and_mails_then_stops_cleanly(tmp_path, database_url):
    port = free_port()
    text = (
        EXAMPLE.read_text(encoding="utf-8")
        .replace("https://127.0.0.1:8443", f"https://127.0.0.1:{port}")
        .replace("port = 8443", f"port = {port}")
        .replace('url = "sqlite:///var/edrtrial.db"', f'url = "{database_url}"')
    )
    config = tmp_path / "config.toml"  # relative var/ paths now live under tmp_path
    config.write_text(text, encoding="utf-8")
    subprocess.run(
        [EDRTRIAL, "--config", str(config), "db", "upgrade"], check=True, capture_output=True
    )
    serve = subprocess.Popen(
        [EDRTRIAL, "--config", str(config), "serve", "--with-sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
            count(engine, Ticket.id) and list((tmp_path / "var" / "mail").glob("*.eml"))
        ):
            assert serve.poll() is None, serve.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.5)
        assert count(engine, Ticket.id) > 0
        assert count(engine, OutboxMessage.id) > 0
        assert list((tmp_path / "var" / "mail").glob("*.eml"))
        with engine.connect() as conn:
            assert conn.scalar(select(func.count(ServiceLock.name))) == 1
    finally:
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=60)[0].decode()
    assert serve.returncode == 0, output
    assert "stopped" in output
    with engine.connect() as conn:  # the lease is given back for the next start
        assert conn.scalar(select(func.count(ServiceLock.name))) == 0
    engine.dispose()
