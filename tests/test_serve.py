"""`edrtrial serve --with-sandbox` as a real process (what `make run` does): on an empty store
it seeds the sandbox's sample programme, tickets arrive; SIGINT stops it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from edrtrial.db import make_engine
from edrtrial.models import Cohort, Company, OutboxMessage, ServiceLock, Ticket
from edrtrial.timeutil import as_utc

import clock
from sandbox_config import settings, write_config

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


def test_serve_with_the_sandbox_opens_tickets_and_mails_then_stops_cleanly(
    tmp_path, now, database_url
):
    port = free_port()
    # The example's layout: relative var/ paths (sandbox state, mail) live under tmp_path.
    data = settings(database_url, base_url=f"https://127.0.0.1:{port}", sandbox_port=port)
    config = write_config(tmp_path / "config.toml", data, companies=0)  # an empty store
    subprocess.run(
        [EDRTRIAL, "--config", str(config), "db", "upgrade"],
        check=True,
        capture_output=True,
        env=clock.subprocess_env(),
    )
    serve = subprocess.Popen(
        [EDRTRIAL, "--config", str(config), "serve", "--with-sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clock.subprocess_env(),  # the service and its sandbox run at the test's now
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
            opened = [as_utc(t) for t in conn.scalars(select(Ticket.created_at))]
        # The service ran on the test's clock, which the sample trials are dated around.
        assert all(now <= t < now + timedelta(minutes=5) for t in opened), opened
    finally:
        serve.send_signal(signal.SIGINT)
        output = serve.communicate(timeout=60)[0].decode()
    assert serve.returncode == 0, output
    assert "seeded the sample programme: 3 companies" in output
    assert "edrtrial serving 3 tenants" in output
    assert "stopped" in output
    with engine.connect() as conn:  # the row naming the holder is removed
        assert conn.scalar(select(func.count(ServiceLock.name))) == 0
        assert conn.scalar(select(func.count(Company.id))) == 3
        assert list(conn.scalars(select(Cohort.name))) == ["サンプル第1期"]
    engine.dispose()
