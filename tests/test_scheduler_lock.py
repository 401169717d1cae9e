"""One service per store, decided by a lock that dies with its process (an OS file lock
beside a SQLite file, an advisory lock on PostgreSQL): a second service is refused naming
the first; a released or lost lock is free at once. Restarting after kill -9 is in
test_serve_resilience.py."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from edrtrial.db import make_engine, make_sessions, upgrade
from edrtrial.errors import LockHeldError
from edrtrial.service import ownership
from edrtrial.service.scheduler import record_holder

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def test_a_second_service_is_refused_naming_the_first_until_it_lets_go(engine):
    record_holder(make_sessions(engine), "host-a:100", NOW)
    first = ownership.take(engine, "host-a:100", NOW)
    try:
        with pytest.raises(
            LockHeldError, match=r"\(host-a:100, since 2026-11-22 10:00 JST\).*stop it first"
        ):
            ownership.take(engine, "host-b:200", NOW + timedelta(seconds=30))
        assert first.lost() is None
    finally:
        first.release()
    ownership.take(engine, "host-b:200", NOW + timedelta(seconds=31)).release()


def test_the_sqlite_lock_file_sits_beside_the_database_and_is_owner_only(engine):
    if engine.url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's lock file")
    held = ownership.take(engine, "host-a:100", NOW)
    try:
        path = f"{engine.url.database}.lock"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # It names its holder, for a store whose service_lock table cannot be read.
        with open(path, encoding="utf-8") as file:
            assert file.read().startswith("host-a:100, since 2026-11-22 10:00 JST")
    finally:
        held.release()


def test_an_in_memory_store_belongs_to_its_process_alone():
    engine = make_engine("sqlite://")
    upgrade(engine)
    held = ownership.take(engine, "host-a:100", NOW)
    assert held.lost() is None
    held.release()
    engine.dispose()


def _lock_backend(held: ownership.Ownership) -> int:
    conn = held._conn  # type: ignore[attr-defined]
    return int(conn.scalar(text("SELECT pg_backend_pid()")))


def test_a_lost_postgresql_lock_is_taken_again_or_given_up_to_the_new_holder(engine):
    if engine.url.get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL's advisory lock")
    held = ownership.take(engine, "host-a:100", NOW)
    admin = make_engine(make_url(engine.url).render_as_string(hide_password=False))
    try:
        with admin.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": _lock_backend(held)})
        assert held.lost() is None  # taken again on a new connection
        with pytest.raises(LockHeldError):
            ownership.take(engine, "host-b:200", NOW)
        with admin.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": _lock_backend(held)})
        other = ownership.take(engine, "host-b:200", NOW)  # took it while ours was lost
        try:
            assert "another edrtrial service" in (held.lost() or "")
        finally:
            other.release()
    finally:
        held.release()
        admin.dispose()


def test_a_store_reached_through_a_symlink_is_the_same_store(engine, tmp_path):
    """Two services on one SQLite file would poll and mail twice, whatever path each was
    given to it: a symlink to the file (or to its folder) leads to the same lock."""
    if engine.url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's lock file")
    real = Path(engine.url.database or "")
    (tmp_path / "alias.db").symlink_to(real)
    (tmp_path / "alias-dir").symlink_to(real.parent, target_is_directory=True)
    held = ownership.take(engine, "host-a:100", NOW)
    try:
        for other in (tmp_path / "alias.db", tmp_path / "alias-dir" / real.name):
            aliased = make_engine(f"sqlite:///{other}")
            try:
                with pytest.raises(LockHeldError, match="host-a:100"):
                    ownership.take(aliased, "host-b:200", NOW)
            finally:
                aliased.dispose()
    finally:
        held.release()


def test_a_removed_lock_file_is_taken_again_and_never_lets_a_second_service_in(engine):
    """An operator tidying up "stale" lock files must not open the store to a second
    service: the live one locks its file again, or, if another was quicker, stops."""
    if engine.url.get_backend_name() != "sqlite":
        pytest.skip("SQLite's lock file")
    path = Path(f"{engine.url.database}.lock")
    held = ownership.take(engine, "host-a:100", NOW)
    try:
        path.unlink()
        assert held.lost() is None  # locked again at the same name
        with pytest.raises(LockHeldError, match="host-a:100"):
            ownership.take(engine, "host-b:200", NOW)
        path.unlink()
        other = ownership.take(engine, "host-b:200", NOW)  # quicker than our next look
        try:
            lost = held.lost() or ""
            assert "was removed" in lost and "another edrtrial service" in lost
        finally:
            other.release()
    finally:
        held.release()


def test_whether_a_service_holds_the_store_is_told_without_taking_its_lock(engine):
    """`edrtrial status` asks the lock itself (the kernel's list of file locks, PostgreSQL's
    pg_locks): a killed service's heartbeat row says nothing about whether it still runs."""
    assert ownership.is_held(engine) is False
    held = ownership.take(engine, "host-a:100", NOW)
    try:
        assert ownership.is_held(engine) is True
        assert held.lost() is None  # asking took nothing from the holder
    finally:
        held.release()
    assert ownership.is_held(engine) is False
    ownership.take(engine, "host-b:200", NOW).release()  # and nothing was left taken


def test_an_in_memory_store_cannot_be_asked():
    engine = make_engine("sqlite://")
    upgrade(engine)
    assert ownership.is_held(engine) is None
    engine.dispose()
