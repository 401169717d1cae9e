"""The scheduler's job store waits out a store that is locked or out of reach, says so in
one line going down and one coming back, and gives up naming why when waiting cannot help.

On a real store held by another connection: SQLite's write lock (`BEGIN IMMEDIATE`) with a
short busy timeout, PostgreSQL's table lock met by a short `lock_timeout`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from edrtrial.service import patience
from edrtrial.service.patience import PatientJobStore, StoreOutage

WHEN = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def _impatient_engine(database_url: str) -> Engine:
    """An engine on the store that gives up on a held lock after a fraction of a second."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": 0.2})
    # A lock waited for longer than this fails with "canceling statement due to lock timeout".
    options = f"{url.query.get('options', '')} -c lock_timeout=200".strip()
    return create_engine(url, connect_args={"options": options})


@contextmanager
def _held(database_url: str) -> Iterator[None]:
    """Another connection holds the job table until the block ends."""
    engine = create_engine(make_url(database_url))
    conn = engine.connect()
    try:
        if engine.url.get_backend_name() == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("LOCK TABLE apscheduler_jobs IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def _store(database_url: str, give_up_after: float = 60) -> tuple[PatientJobStore, Job]:
    store = PatientJobStore(
        StoreOutage(),
        give_up_after=give_up_after,
        engine=_impatient_engine(database_url),
        tablename="apscheduler_jobs",
    )
    scheduler = BackgroundScheduler(timezone=UTC)
    store.start(scheduler, "default")
    job = Job(
        scheduler,
        id="outbox",
        func="edrtrial.service.scheduler:run_job",
        args=["outbox"],
        kwargs={},
        trigger=IntervalTrigger(seconds=10, timezone=UTC),
        executor="default",
        name="outbox",
        misfire_grace_time=300,
        coalesce=True,
        max_instances=1,
        next_run_time=WHEN,
    )
    store.add_job(job)
    return store, job


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edrtrial.service.patience"]


def test_a_job_update_waits_for_a_held_lock_and_logs_one_line_each_way(
    database_url, caplog, monkeypatch
):
    monkeypatch.setattr(patience, "OUTAGE_AFTER_SECONDS", 2.0)  # the lock is held 4 s
    store, job = _store(database_url)
    job._modify(next_run_time=WHEN + timedelta(seconds=10))
    caplog.set_level(logging.INFO, logger="edrtrial.service.patience")
    with _held(database_url):
        updating = threading.Thread(target=store.update_job, args=(job,))
        updating.start()
        time.sleep(4)  # several attempts meet the lock meanwhile
        assert updating.is_alive()
    updating.join(timeout=60)
    assert not updating.is_alive()
    assert store.failure is None
    assert store.lookup_job("outbox").next_run_time == WHEN + timedelta(seconds=10)
    messages = _messages(caplog)
    assert len(messages) == 2, messages
    assert messages[0].startswith("store unavailable (the scheduler's job update: ")
    assert messages[1].startswith("store available again after ")
    store.shutdown()


def test_a_write_refused_for_a_moment_is_retried_without_a_word_of_outage(database_url, caplog):
    """A SQLite write that loses a race between the service's own threads fails at once
    with "database is locked": retried, it goes through, and the log tells no outage."""
    store, job = _store(database_url)
    job._modify(next_run_time=WHEN + timedelta(seconds=20))
    caplog.set_level(logging.INFO, logger="edrtrial.service.patience")
    with _held(database_url):
        updating = threading.Thread(target=store.update_job, args=(job,))
        updating.start()
        time.sleep(1.5)  # an attempt or two meet the lock
    updating.join(timeout=60)
    assert not updating.is_alive() and store.failure is None
    assert store.lookup_job("outbox").next_run_time == WHEN + timedelta(seconds=20)
    assert _messages(caplog) == []
    store.shutdown()


def test_a_store_unavailable_too_long_is_given_up_naming_why(database_url):
    store, job = _store(database_url, give_up_after=2)
    with _held(database_url), pytest.raises(OperationalError):
        store.update_job(job)
    assert store.failure is not None
    assert store.failure.startswith("the store has been unavailable for ")
    assert store.failure.endswith("the scheduler cannot go on")
    store.shutdown()


def test_a_broken_job_table_is_given_up_at_once(database_url):
    store, job = _store(database_url)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE apscheduler_jobs"))
    started = time.monotonic()
    with pytest.raises(SQLAlchemyError):
        store.update_job(job)
    assert time.monotonic() - started < 5  # no waiting: nothing would mend it
    assert store.failure is not None and "apscheduler_jobs" in store.failure
    store.shutdown()
