"""The schedule is rebuilt from the store's companies with stable ids."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.executors.pool import ThreadPoolExecutor
from sqlalchemy import select, text, update

from edrtrial.config import load_config
from edrtrial.errors import StoreError
from edrtrial.models import Company, Tenant
from edrtrial.service import scheduler
from edrtrial.service.runtime import Runtime

import clock
from sandbox_config import settings, write_config


def config_for(tmp_path: Path, database_url: str, companies: int) -> Path:
    data = settings(database_url)
    return write_config(tmp_path / f"config{companies}.toml", data, companies=companies)


def job_ids(tmp_path: Path, database_url: str, companies: int) -> set[str]:
    runtime = Runtime.open(load_config(config_for(tmp_path, database_url, companies)))
    sched = scheduler.build_scheduler(runtime)
    try:
        return {job.id for job in sched.get_jobs()}
    finally:
        sched.shutdown(wait=False)
        runtime.close()


def test_jobs_have_stable_ids_and_a_restart_drops_what_the_store_no_longer_polls(
    tmp_path, engine, database_url
):
    common = {
        "heartbeat",
        "tenants",
        "outbox",
        "desk",
        "weekly-reports",
        "monthly-reports",
        "trial-lifecycle",
        "seat-report",
    }
    assert job_ids(tmp_path, database_url, 2) == common | {
        "poll:sakura-seisakusho",
        "inventory:sakura-seisakusho",
        "poll:midori-shoji",
        "inventory:midori-shoji",
    }
    with engine.begin() as conn:  # midori's programme ended: its credentials were dropped
        conn.execute(
            update(Tenant)
            .where(
                Tenant.company_id
                == select(Company.id).where(Company.key == "midori-shoji").scalar_subquery()
            )
            .values(credentials_dropped_at=datetime.now(UTC))
        )
    assert job_ids(tmp_path, database_url, 2) == common | {
        "poll:sakura-seisakusho",
        "inventory:sakura-seisakusho",
    }


def test_the_monthly_report_runs_on_its_day_and_a_report_switched_off_is_not_scheduled(
    tmp_path, engine, database_url
):
    data = settings(database_url)
    data.setdefault("schedules", {})["monthly_report"] = "3 07:45"
    runtime = Runtime.open(load_config(write_config(tmp_path / "c.toml", data, companies=0)))
    sched = scheduler.build_scheduler(runtime)
    try:
        monthly = sched.get_job("monthly-reports")
        due = monthly.trigger.get_next_fire_time(None, datetime(2026, 11, 25, tzinfo=UTC))
        assert due.astimezone(scheduler.JST).isoformat() == "2026-12-03T07:45:00+09:00"
    finally:
        sched.shutdown(wait=False)
        runtime.close()
    assert "monthly-reports" in scheduler.WAITED_OUT  # made up after a store outage

    data["reports"] = {"weekly": False, "monthly": False}
    runtime = Runtime.open(load_config(write_config(tmp_path / "d.toml", data, companies=0)))
    sched = scheduler.build_scheduler(runtime)
    try:
        ids = {job.id for job in sched.get_jobs()}
    finally:
        sched.shutdown(wait=False)
        runtime.close()
    assert "weekly-reports" not in ids and "monthly-reports" not in ids
    assert "trial-lifecycle" in ids


def test_a_company_verified_while_the_service_runs_is_polled_without_a_restart(
    tmp_path, engine, database_url
):
    runtime = Runtime.open(load_config(config_for(tmp_path, database_url, 1)))
    sched = scheduler.build_scheduler(runtime)
    try:
        assert "tenants" in {job.id for job in sched.get_jobs()}
        assert scheduler.follow_tenants(sched, runtime) == ([], [])
        # A second company's tenant verified after the start (as `tenants verify` leaves it).
        write_config(tmp_path / "config2.toml", settings(database_url), companies=2)
        added, dropped = scheduler.follow_tenants(sched, runtime)
        assert added == ["inventory:midori-shoji", "poll:midori-shoji"] and dropped == []
        with engine.begin() as conn:  # sakura's credentials dropped at its programme's end
            conn.execute(
                update(Tenant)
                .where(
                    Tenant.company_id
                    == select(Company.id)
                    .where(Company.key == "sakura-seisakusho")
                    .scalar_subquery()
                )
                .values(credentials_dropped_at=datetime.now(UTC))
            )
        added, dropped = scheduler.follow_tenants(sched, runtime)
        assert added == [] and dropped == ["inventory:sakura-seisakusho", "poll:sakura-seisakusho"]
        assert {j.id for j in sched.get_jobs() if ":" in j.id} == {
            "inventory:midori-shoji",
            "poll:midori-shoji",
        }
    finally:
        sched.shutdown(wait=False)
        runtime.close()


def test_jobs_stored_by_an_older_version_are_replaced_without_an_error(
    tmp_path, engine, database_url, caplog
):
    """A job of the flat layout names `edrtrial.scheduler:run_job`, which no longer exists."""
    assert job_ids(tmp_path, database_url, 1)  # creates the job table
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO apscheduler_jobs (id, next_run_time, job_state) "
                "VALUES ('poll:gone-kk', 1, :state)"
            ),
            {
                "state": pickle.dumps(
                    {"version": 1, "id": "poll:gone-kk", "func": "edrtrial.scheduler:run_job"}
                )
            },
        )
    with caplog.at_level(logging.WARNING, logger="apscheduler"):
        ids = job_ids(tmp_path, database_url, 1)
    assert "poll:gone-kk" not in ids and "poll:sakura-seisakusho" in ids
    assert [r.getMessage() for r in caplog.records if "restore" in r.getMessage()] == []


def _stopped_within(sched, seconds: float) -> str | None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while (why := scheduler.why_stopped(sched)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return why


def test_a_scheduler_whose_jobs_no_longer_run_is_told_stopped(
    tmp_path, engine, database_url, monkeypatch
):
    """Its thread alive, its store up, but no job starts (an executor that cannot start a
    thread logs an error each time and goes on): `serve` must end, not idle on."""
    monkeypatch.setattr(scheduler, "HEARTBEAT", timedelta(seconds=1))
    monkeypatch.setattr(scheduler, "STALLED_AFTER", timedelta(seconds=4))
    runtime = Runtime.open(load_config(config_for(tmp_path, database_url, 1)))
    try:
        working = scheduler.build_scheduler(runtime)
        working.resume()
        try:
            assert _stopped_within(working, 7) is None  # it beats: nothing to say
        finally:
            scheduler.stop(working)

        def cannot_start(*_args, **_kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(ThreadPoolExecutor, "_do_submit_job", cannot_start)
        broken = scheduler.build_scheduler(runtime)
        broken.resume()
        try:
            why = _stopped_within(broken, 15)
        finally:
            scheduler.stop(broken)
        assert why is not None and "no heartbeat for" in why and "runs no jobs" in why
    finally:
        runtime.close()


def test_a_job_table_the_scheduler_cannot_write_stops_the_start_in_one_line(
    tmp_path, engine, database_url
):
    """Not a wait: a table of that name that is not the scheduler's (or is dropped while
    the schedule is built) is a store to mend, named in one line, not a traceback."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE apscheduler_jobs (note VARCHAR(10))"))
    runtime = Runtime.open(load_config(config_for(tmp_path, database_url, 1)))
    try:
        with pytest.raises(StoreError, match="the scheduler's job store failed"):
            scheduler.build_scheduler(runtime)
    finally:
        runtime.close()


# Run in a process of its own: a stop that deadlocks would also hang the interpreter's exit
# (it joins the job's thread), so the scenario ends with os._exit, whatever happened.
_STOP_DURING_TENANTS = r"""
import os, sys, threading, time
from pathlib import Path
from datetime import datetime
from apscheduler.schedulers.base import STATE_STOPPED
from edrtrial.config import load_config
from edrtrial.service import scheduler
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import JST

runtime = Runtime.open(load_config(Path(sys.argv[1])))
sched = scheduler.build_scheduler(runtime)
entered, go = threading.Event(), threading.Event()
real = scheduler._tenant_jobs

def held(rt, now):
    entered.set()
    go.wait(30)
    return real(rt, now)

scheduler._tenant_jobs = held
sched.modify_job("tenants", next_run_time=datetime.now(JST))
sched.resume()
if not entered.wait(30):
    print("the tenants job did not start", flush=True)
    os._exit(2)
stopping = threading.Thread(target=scheduler.stop, args=(sched,), daemon=True)
stopping.start()
while sched.state != STATE_STOPPED:
    time.sleep(0.01)
time.sleep(0.5)  # the stop is under way before the job reaches the scheduler
go.set()
stopping.join(30)
print("still stopping" if stopping.is_alive() else "stopped", flush=True)
os._exit(1 if stopping.is_alive() else 0)
"""


def test_a_stop_while_the_tenants_job_runs_waits_for_it_and_ends(tmp_path, now, database_url):
    """The tenants job adds and drops jobs in the running scheduler. A stop that came while it
    ran used to wait for it for ever: APScheduler's shutdown holds its job stores' lock while
    it waits for the running jobs, and the job waited for that lock (`serve` then never
    ended on SIGINT, and a supervisor had to kill it)."""
    config = config_for(tmp_path, database_url, 1)
    done = subprocess.run(
        [sys.executable, "-c", _STOP_DURING_TENANTS, str(config)],
        capture_output=True,
        text=True,
        env=clock.subprocess_env(),
        cwd=tmp_path,  # not the checkout, whose folders would shadow the installed package
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1:] == ["stopped"], done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
