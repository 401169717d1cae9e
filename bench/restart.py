"""Restart to first poll: `kill -9` a running `edrtrial serve`, start a new one at once, and
time until the new process has stored a poll (read from the store, as an operator would).

Nothing waits for a lease: the killed process's lock (a file lock beside SQLite, an
advisory lock on PostgreSQL) went with it. The goal is a poll within 5 s of the kill.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from edrtrial.models import Tenant

EDRTRIAL = str(Path(sys.executable).parent / "edrtrial")
GOAL_SECONDS = 5.0
WAIT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Restart:
    """Seconds from the kill to the new process's first stored poll, and to all tenants'."""

    first_poll_seconds: float | None
    all_polled_seconds: float | None
    tenants: int
    problem: str = ""


def _polled_since(engine: Engine, mark: datetime | None) -> tuple[int, datetime | None]:
    """(tenants whose last successful poll is after `mark`, the latest such poll)."""
    with engine.connect() as conn:
        query = select(func.count(), func.max(Tenant.last_success_at)).select_from(Tenant)
        if mark is not None:
            query = query.where(Tenant.last_success_at > mark)
        else:
            query = query.where(Tenant.last_success_at.is_not(None))
        count, latest = conn.execute(query).one()
    return int(count or 0), latest


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [EDRTRIAL, "--config", str(config), "serve"], stdout=out, stderr=subprocess.STDOUT
        )


def _wait(engine: Engine, mark: datetime | None, want: int, serve: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and serve.poll() is None:
        if _polled_since(engine, mark)[0] >= want:
            return True
        time.sleep(0.05)
    return False


def measure(config: Path, engine: Engine, root: Path) -> Restart:
    """Run a service until it has polled every tenant, kill -9 it, time the next one."""
    with engine.connect() as conn:
        tenants = int(conn.scalar(select(func.count()).select_from(Tenant)) or 0)
    log = root / "serve.log"
    before = _polled_since(engine, None)[1]
    first = _serve(config, log)
    try:
        if not _wait(engine, before, tenants, first):
            return Restart(None, None, tenants, f"the first service did not poll: see {log}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = time.perf_counter()
    mark = _polled_since(engine, None)[1]
    second = _serve(config, log)
    try:
        first_poll = all_polled = None
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and second.poll() is None:
            polled = _polled_since(engine, mark)[0]
            if polled and first_poll is None:
                first_poll = time.perf_counter() - killed
            if polled >= tenants:
                all_polled = time.perf_counter() - killed
                break
            time.sleep(0.05)
        problem = "" if all_polled else f"the new service did not poll every tenant: see {log}"
        return Restart(first_poll, all_polled, tenants, problem)
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=60)
        except subprocess.TimeoutExpired:
            second.kill()
