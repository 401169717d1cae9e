"""`serve` is never alive and idle: a store that is locked or gone for a while is waited
for (one log line going down, one coming back), and a scheduler that cannot go on ends the
process with its reason in one line, so that a supervisor restarts it."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from edrtrial.db import make_engine
from edrtrial.models import ServiceLock, Ticket

from sandbox_config import settings, write_config
from serve_process import Serve, edrtrial
from test_serve import free_port

pytestmark = pytest.mark.slow


def _scalar(engine, query):  # type: ignore[no-untyped-def]
    try:
        with engine.connect() as conn:
            return conn.scalar(query)
    except (OperationalError, ProgrammingError):
        return None


def _heartbeat(engine) -> datetime | None:  # type: ignore[no-untyped-def]
    return _scalar(engine, select(ServiceLock.heartbeat_at))


def _sandboxed_config(tmp_path: Path, database_url: str) -> Path:
    port = free_port()
    data = settings(database_url, base_url=f"https://127.0.0.1:{port}", sandbox_port=port)
    config = write_config(tmp_path / "config.toml", data)
    assert edrtrial(config, "db", "upgrade").returncode == 0
    return config


def test_a_write_lock_held_past_the_busy_timeout_is_waited_out_and_serving_goes_on(
    tmp_path, now, database_url
):
    """The scheduler's own job store must write while another connection holds the lock
    (the outbox job is due every 10 s): it waits, and polls again once the lock is gone."""
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("a held SQLite write lock")
    config = _sandboxed_config(tmp_path, database_url)
    engine = make_engine(database_url)
    serve = Serve(config, tmp_path / "serve.log", "--with-sandbox")
    try:
        serve.wait_until(
            "a first ticket", lambda: bool(_scalar(engine, select(func.count(Ticket.id)))), 90
        )
        holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(45)  # longer than the store's 30 s busy timeout
        holder.execute("ROLLBACK")
        holder.close()
        released = _heartbeat(engine)
        assert released is not None
        serve.wait_until(
            "a heartbeat after the lock was released",
            lambda: (_heartbeat(engine) or released) > released,
            60,
        )
        assert serve.alive()
    finally:
        code = serve.stop()
        engine.dispose()
    output = serve.output()
    assert code == 0, output
    assert "Traceback" not in output
    assert output.count("store unavailable") == 1, output
    assert output.count("store available again") == 1, output
