"""`serve` is never alive and idle: a store that is locked or gone for a while is waited
for (one log line going down, one coming back), and a scheduler that cannot go on ends the
process with its reason in one line, so that a supervisor restarts it."""

from __future__ import annotations

import signal
import sqlite3
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from edrtrial.db import make_engine
from edrtrial.models import ServiceLock, Tenant, Ticket

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


def _last_poll(engine) -> datetime | None:  # type: ignore[no-untyped-def]
    return _scalar(engine, select(func.max(Tenant.last_success_at)))


def test_a_service_killed_with_sigkill_is_replaced_at_once(tmp_path, now, database_url):
    """No lease to wait out: the killed process's lock went with it, and the new one owns
    the store and polls straight away (the bound is generous; `make bench` times it)."""
    config = _sandboxed_config(tmp_path, database_url)
    engine = make_engine(database_url)
    first = Serve(config, tmp_path / "first.log", "--with-sandbox")
    try:
        first.wait_until("a first poll", lambda: _last_poll(engine) is not None, 90)
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = _last_poll(engine)
    assert killed_at is not None
    second = Serve(config, tmp_path / "second.log", "--with-sandbox")
    try:
        second.wait_until(
            "a poll by the new service", lambda: (_last_poll(engine) or killed_at) > killed_at, 30
        )
        with engine.connect() as conn:  # the row shows the new holder
            holder = conn.scalar(select(ServiceLock.holder))
        assert holder is not None and holder.endswith(f":{second.process.pid}")
    finally:
        code = second.stop()
        engine.dispose()
    assert code == 0, second.output()
    assert "another edrtrial service" not in second.output()


def test_a_second_live_service_is_refused_naming_the_first(tmp_path, now, database_url):
    config = _sandboxed_config(tmp_path, database_url)
    engine = make_engine(database_url)
    first = Serve(config, tmp_path / "first.log")
    try:
        first.wait_until("the first service's row", lambda: _heartbeat(engine) is not None, 60)
        second = edrtrial(config, "serve")
        assert second.returncode == 3, second.stderr  # a supervisor does not retry it
        assert "Traceback" not in second.stderr
        assert f":{first.process.pid}, since " in second.stderr
        assert "stop it first" in second.stderr
        assert first.alive()
    finally:
        assert first.stop() == 0, first.output()
        engine.dispose()


def test_a_scheduler_that_cannot_go_on_ends_the_process_with_the_reason(
    tmp_path, now, database_url
):
    """Its job table dropped under it: no waiting mends that, so the process ends non-zero
    (for systemd to restart it, which builds the table again) rather than stay up idle."""
    config = _sandboxed_config(tmp_path, database_url)
    engine = make_engine(database_url)
    serve = Serve(config, tmp_path / "serve.log")
    try:
        # Serving: every job is in the table (dropping it while the schedule is being built
        # is a start that fails, in one line: tests/test_scheduler.py).
        serve.wait_until("serving", lambda: "edrtrial serving" in serve.output(), 60)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE apscheduler_jobs"))
        deadline = time.monotonic() + 60
        while serve.alive() and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        code = serve.stop()
        engine.dispose()
    output = serve.output()
    assert code == 4, output
    stopped = [line for line in output.splitlines() if line.startswith("stopped:")]
    assert len(stopped) == 1, output
    assert "the scheduler's job store failed" in stopped[0] and "apscheduler_jobs" in stopped[0]
    assert "Traceback" not in output


def test_a_postgresql_service_whose_connections_are_cut_carries_on_and_keeps_the_store(
    tmp_path, now, database_url
):
    """Every connection of the service ended by the server (a restart, a failover), its
    advisory lock's among them: it takes the lock again and polls on."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL's connections")
    name = f"edrtrial-{uuid.uuid4().hex[:12]}"
    url = make_url(database_url).update_query_dict({"application_name": name})
    config = _sandboxed_config(tmp_path, url.render_as_string(hide_password=False))
    engine = make_engine(database_url)
    serve = Serve(config, tmp_path / "serve.log", "--with-sandbox")
    try:
        serve.wait_until("a first poll", lambda: _last_poll(engine) is not None, 90)
        with engine.begin() as conn:
            cut = conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            )
        assert cut and cut >= 2  # the lock's connection and at least one of the pool's
        cut_at = _last_poll(engine)
        assert cut_at is not None
        serve.wait_until(
            "a poll after the cut", lambda: (_last_poll(engine) or cut_at) > cut_at, 60
        )
        second = edrtrial(config, "serve")  # the store is still this service's
        assert second.returncode == 3 and "another edrtrial service" in second.stderr
        assert serve.alive()
    finally:
        code = serve.stop()
        engine.dispose()
    assert code == 0, serve.output()
    assert "Traceback" not in serve.output()


def test_sigterm_while_the_store_is_locked_stops_the_service_within_a_supervisors_patience(
    tmp_path, now, database_url
):
    """A stop during an outage does not wait the lock out once more to tidy the
    `service_lock` row: it ends well within the README's TimeoutStopSec (60 s), after which
    systemd would kill it."""
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("a held SQLite write lock")
    config = _sandboxed_config(tmp_path, database_url)
    engine = make_engine(database_url)
    serve = Serve(config, tmp_path / "serve.log", "--with-sandbox")
    holder = None
    try:
        serve.wait_until(
            "a first ticket", lambda: bool(_scalar(engine, select(func.count(Ticket.id)))), 90
        )
        holder = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        serve.wait_until("the outage's line", lambda: "store unavailable" in serve.output(), 90)
        asked = time.monotonic()
        code = serve.stop(signal.SIGTERM, timeout=120)
        took = time.monotonic() - asked
    finally:
        serve.stop()
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        engine.dispose()
    output = serve.output()
    assert code == 0, output
    assert took < 45, f"stopped {took:.0f} s after SIGTERM:\n{output}"
    assert "Traceback" not in output


def test_a_sandbox_that_ends_under_serve_with_sandbox_ends_the_process(
    tmp_path, now, database_url, monkeypatch
):
    """`serve --with-sandbox` polls its own sandbox: one whose thread ended would leave
    the service polling nothing new, so it stops non-zero with the reason in one line."""
    from click.testing import CliRunner

    from edrtrial.cli.main import main
    from edrtrial.sandbox.world import SandboxWorld

    def broken(self, now=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("the world broke")

    monkeypatch.setattr(SandboxWorld, "tick", broken)
    config = _sandboxed_config(tmp_path, database_url)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--config", str(config), "serve", "--with-sandbox"])
    assert result.exit_code == 4, result.output
    assert time.monotonic() - started < 60
    stopped = [line for line in result.output.splitlines() if line.startswith("stopped:")]
    assert stopped == ["stopped: the sandbox's ticker has ended (RuntimeError: the world broke)"]
    assert "Traceback" not in result.output
