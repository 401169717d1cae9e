"""A poll killed with SIGKILL mid-way, then restarted, loses nothing and doubles nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from edrtrial.db import make_engine, make_sessions, upgrade
from edrtrial.models import Alert, OutboxMessage, Ticket
from edrtrial.sandbox import Budgets, SandboxServer, SandboxWorld

import clock
from sandbox_config import sandbox_config

EDRTRIAL = str(Path(sys.executable).parent / "edrtrial")
SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
BACKLOG = 400
PAGE = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its backlog made at the test's now (the sample trial is dated around it)."""
    world = SandboxWorld(seed=3, tenants=1, alert_interval_seconds=10**6, backlog_alerts=BACKLOG)
    world.set_latency(0.04)  # slow enough pages that the kill lands mid-poll
    # Crashed and clean runs share one sandbox tenant; budgets are tested elsewhere.
    world.set_budgets(Budgets(graph_per_minute=None, mde_per_minute=None, mde_per_hour=None))
    server = SandboxServer(world, host="127.0.0.1", port=0, state_dir=tmp_path / "sandbox")
    server.start()
    yield server
    server.stop()


def alert_count(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count(Alert.id))) or 0
    except (OperationalError, ProgrammingError):
        return 0


def poll_process(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [EDRTRIAL, "--config", str(config), "poll", "--no-deliver"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clock.subprocess_env({**os.environ, "NO_COLOR": "1"}),  # the test's now
    )


def kill_when(proc: subprocess.Popen[bytes], engine: Engine, at_least: int) -> int:
    """SIGKILL the poll once `at_least` alerts are committed; returns the count at the kill."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = alert_count(engine)
        if count >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return count
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"poll ended before the kill (at {count} alerts):\n{output}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("poll made no progress")


def outcome(url: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Alerts, tickets (by correlation key, with their alerts) and queued notices."""
    sessions = make_sessions(make_engine(url))
    with sessions() as session:
        alerts = sorted(session.scalars(select(Alert.source_id)))
        tickets = {
            t.correlation_key: sorted(a.source_id for a in t.alerts)
            for t in session.scalars(select(Ticket))
        }
        notices = sorted(session.scalars(select(OutboxMessage.dedupe_key)))
    return alerts, tickets, notices


def test_sigkill_mid_poll_then_restart_stores_everything_exactly_once(
    tmp_path, sandbox, new_database_url
):
    crashed_url, clean_url = new_database_url(), new_database_url()
    for url in (crashed_url, clean_url):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    extra = {"alert_page_size": PAGE}
    crash_dir, clean_dir = tmp_path / "crash", tmp_path / "clean"
    crash_dir.mkdir()
    clean_dir.mkdir()
    crashed = sandbox_config(crash_dir, sandbox, crashed_url, companies=1, connection=extra)
    engine = make_engine(crashed_url)

    first = kill_when(poll_process(crashed), engine, at_least=3 * PAGE)
    second = kill_when(poll_process(crashed), engine, at_least=first + 5 * PAGE)
    assert 0 < first < second < BACKLOG, "each kill must land in the middle of the poll"
    finished = poll_process(crashed)
    assert finished.wait(timeout=120) == 0, finished.stdout.read().decode()  # type: ignore[union-attr]
    engine.dispose()

    clean = sandbox_config(clean_dir, sandbox, clean_url, companies=1, connection=extra)
    finished = poll_process(clean)
    assert finished.wait(timeout=120) == 0, finished.stdout.read().decode()  # type: ignore[union-attr]

    alerts, tickets, notices = outcome(crashed_url)
    truth = sorted(a["id"] for a in sandbox.world.alerts(SAKURA))
    assert alerts == truth and len(truth) == BACKLOG
    assert tickets, "the backlog holds ticket-worthy alerts"
    assert notices, "and they cause notices"
    assert outcome(crashed_url) == outcome(clean_url)
