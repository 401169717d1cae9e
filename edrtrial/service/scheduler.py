"""The scheduler: APScheduler 3 with a persistent job store, one owner per store.

It only schedules: every job is a function in `edrtrial.service.jobs`. Job ids are stable
(`poll:{company}`), and the schedule is rebuilt from the config at each start.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timedelta

from apscheduler.executors.base import BaseExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import reason, store_unavailable, transaction
from edrtrial.errors import StoreError
from edrtrial.models import ServiceLock
from edrtrial.service import jobs, runs
from edrtrial.service.ownership import LOCK_NAME
from edrtrial.service.patience import GIVE_UP_AFTER_SECONDS, PatientJobStore, StoreOutage
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import JST

log = logging.getLogger(__name__)

HEARTBEAT = timedelta(seconds=20)
STALLED_AFTER = timedelta(minutes=5)
"""No heartbeat for this long, and no store outage to explain it: the scheduler runs no
jobs (an executor that cannot start them, a loop that hangs), and the process must end."""
FIRST_LIFECYCLE_DELAY = timedelta(seconds=60)
FIRST_POLL_DELAY = timedelta(seconds=1)
"""The first poll of each tenant is queued just behind its first inventory (they share the
tenant's lock), so alerts find their devices and polling starts within seconds of a start."""

WAITED_OUT = frozenset({"weekly-reports", "monthly-reports", "trial-lifecycle", "seat-report"})
"""Jobs on a cron schedule, retried in place while the store is unavailable (each run of
them is safe to repeat: a period's report is mailed once, a trial's step taken once)."""

_runtime: Runtime | None = None
_outage = StoreOutage()
_last_beat = time.monotonic()
_scheduler: BackgroundScheduler | None = None


def holder_id() -> str:
    """Names this process in the `service_lock` row, so a refusal says who holds the store."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_holder(sessions: sessionmaker[Session], holder: str, now: datetime) -> None:
    """Write who owns the store and since when into `service_lock`, for people to read.

    Called once the process holds the store's lock (`edrtrial.service.ownership`), which
    alone decides: a row left by a killed process is simply overwritten.
    """
    with transaction(sessions) as session:
        row = session.get(ServiceLock, LOCK_NAME)
        if row is None:
            session.add(
                ServiceLock(name=LOCK_NAME, holder=holder, acquired_at=now, heartbeat_at=now)
            )
        else:
            row.holder, row.acquired_at, row.heartbeat_at = holder, now, now


def release_lock(sessions: sessionmaker[Session], holder: str) -> None:
    """Remove our `service_lock` row on a clean shutdown (the store shows no service).

    Best effort: the row only informs, and the next start overwrites it. While the store
    is unavailable it is left at once: waiting out the lock again would hold up the stop
    past a supervisor's patience, and its stale heartbeat already tells no service runs.
    """
    if _outage.seconds():
        log.warning("the service_lock row was left in place: the store is unavailable")
        return
    try:
        with transaction(sessions) as session:
            lock = session.get(ServiceLock, LOCK_NAME)
            if lock is not None and lock.holder == holder:
                session.delete(lock)
    except SQLAlchemyError as err:
        log.warning("the service_lock row was left in place: %s", reason(err))


def run_job(name: str, company_key: str | None = None) -> None:
    """Entry point the job store refers to by name; runs one job on this process's runtime.

    A job that meets a locked or unreachable store says so once for the whole outage
    (`StoreOutage`) and is run again at its next time, seconds away; a daily or weekly job
    (`WAITED_OUT`) waits the store out instead, rather than a day or a week.
    """
    if _runtime is None:
        raise RuntimeError("scheduler job started without a runtime")
    rt = _runtime
    label = f"job {name}{f' ({company_key})' if company_key else ''}"
    try:
        if name == "heartbeat":
            heartbeat(rt)  # the lock's row is its record
        elif name == "tenants":
            if _scheduler is not None:
                follow_tenants(_scheduler, rt)
        elif company_key is not None:
            runs.run(rt, name, company_key, lambda: jobs.TENANT_JOBS[name](rt, company_key))
        elif name in WAITED_OUT:
            _outage.patiently(
                label,
                lambda: runs.run(rt, name, None, lambda: jobs.JOBS[name](rt)),
                give_up_after=GIVE_UP_AFTER_SECONDS,
                writes=True,
            )
        else:
            runs.run(rt, name, None, lambda: jobs.JOBS[name](rt))
    except Exception as err:
        if store_unavailable(err):
            _outage.down(err, label)  # the job store's own waits tell a real outage
            if name in WAITED_OUT:
                log.error("%s not run: the store stayed unavailable", label)
            return
        # APScheduler would log this too, but without saying which job and tenant failed.
        log.exception("%s failed", label)
        raise


def heartbeat(rt: Runtime) -> None:
    """Mark the `service_lock` row alive, for `edrtrial status`; it decides nothing."""
    with transaction(rt.sessions) as session:
        session.execute(
            update(ServiceLock)
            .where(ServiceLock.name == LOCK_NAME)
            .values(heartbeat_at=rt.clock())
            .execution_options(synchronize_session=False)
        )
    _outage.up()
    global _last_beat
    _last_beat = time.monotonic()


class _Scheduler(BackgroundScheduler):  # type: ignore[misc]
    """APScheduler's background scheduler, its thread's end kept for `why_stopped`.

    An error that ends APScheduler's thread would otherwise print a traceback nobody acts
    on and leave the process up: it is kept (its traceback logged at debug) and `serve`'s
    watchdog stops the process with it in one line.
    """

    ended: str | None = None
    executors: tuple[BaseExecutor, ...] = ()
    """The executors it runs jobs on, for `stop` to wait for."""

    def _main_loop(self) -> None:
        try:
            super()._main_loop()
        except Exception as err:
            self.ended = f"{type(err).__name__}: {reason(err)}"
            log.debug("the scheduler's thread ended", exc_info=err)


def why_stopped(scheduler: BackgroundScheduler) -> str | None:
    """None while the scheduler can go on; else, in one line, why it cannot.

    `serve` asks this every few seconds and ends the process with it: a scheduler thread
    that died (for whatever reason), a job store that gave up, or jobs no longer run (no
    heartbeat for `STALLED_AFTER` while the store is up) leaves a process that would be
    alive and idle.
    """
    store = scheduler._jobstores.get("default")
    if isinstance(store, PatientJobStore) and store.failure:
        return store.failure
    thread = getattr(scheduler, "_thread", None)
    if thread is None or not thread.is_alive():
        ended = getattr(scheduler, "ended", None)
        return f"the scheduler's thread has ended ({ended or 'no error given'})"
    quiet = time.monotonic() - _last_beat
    if quiet > STALLED_AFTER.total_seconds() and not _outage.seconds():
        return f"no heartbeat for {int(quiet)} s with the store up: the scheduler runs no jobs"
    return None


def stop(scheduler: BackgroundScheduler) -> None:
    """Shut the scheduler down, ending any wait for the store first, then wait for the jobs
    still running.

    The wait is not APScheduler's own (`shutdown(wait=True)`): that one holds the job
    stores' lock while it waits, and a running job that adds or drops jobs (the tenants
    job, `follow_tenants`) would wait for that lock for ever, and the stop for it.
    """
    _outage.stopping.set()
    scheduler.shutdown(wait=False)
    for executor in getattr(scheduler, "executors", ()):
        executor.shutdown(wait=True)


def _cron(spec: str, weekly: bool) -> CronTrigger:
    day, _, clock = spec.partition(" ") if weekly else ("*", "", spec)
    hour, minute = clock.split(":")
    return CronTrigger(
        day_of_week=day if weekly else "*", hour=int(hour), minute=int(minute), timezone=JST
    )


def _monthly_cron(spec: str) -> CronTrigger:
    """'D HH:MM': that day of every month, at that time in Tokyo."""
    day, _, clock = spec.partition(" ")
    hour, minute = clock.split(":")
    return CronTrigger(day=int(day), hour=int(hour), minute=int(minute), timezone=JST)


_JobSpec = tuple[tuple[str, str | None], object, datetime | None]


def _tenant_jobs(rt: Runtime, now: datetime) -> dict[str, _JobSpec]:
    """The inventory and poll jobs of each tenant the service works on, by job id."""
    schedules = rt.config.settings.schedules
    wanted: dict[str, _JobSpec] = {}
    for tenant in rt.tenants():
        key = tenant.company_key
        wanted[f"inventory:{key}"] = (
            ("inventory", key),
            IntervalTrigger(minutes=schedules.inventory_minutes),
            now,
        )
        wanted[f"poll:{key}"] = (
            ("poll", key),
            IntervalTrigger(seconds=schedules.poll_seconds),
            now + FIRST_POLL_DELAY,
        )
    return wanted


def _add(scheduler: BackgroundScheduler, job_id: str, spec: _JobSpec) -> None:
    args, trigger, first = spec
    scheduler.add_job(
        "edrtrial.service.scheduler:run_job",
        trigger=trigger,
        args=list(args),
        id=job_id,
        name=job_id,
        replace_existing=True,
        executor="lease" if job_id == "heartbeat" else "default",
        **({"next_run_time": first} if first else {}),
    )


def follow_tenants(scheduler: BackgroundScheduler, rt: Runtime) -> tuple[list[str], list[str]]:
    """Schedule the tenants that came to be worked on since the start (a company verified
    while the service runs) and drop the jobs of those no longer worked on (credentials
    dropped), as a restart would; returns the job ids (added, dropped)."""
    wanted = _tenant_jobs(rt, datetime.now(JST))
    have = {j.id for j in scheduler.get_jobs() if j.id.partition(":")[0] in jobs.TENANT_JOBS}
    if scheduler.state == STATE_STOPPED:  # stopped meanwhile: it has no jobs to follow now
        return [], []
    dropped = sorted(have - wanted.keys())
    added = sorted(wanted.keys() - have)
    for job_id in dropped:
        scheduler.remove_job(job_id)
    for job_id in added:
        _add(scheduler, job_id, wanted[job_id])
    if added or dropped:
        log.info("tenants followed: %s added, %s dropped", added or "none", dropped or "none")
    return added, dropped


def build_scheduler(rt: Runtime) -> BackgroundScheduler:
    """A scheduler whose jobs (stable ids) are rebuilt from the config."""
    global _runtime, _outage, _last_beat
    _runtime = rt
    _outage = StoreOutage()
    _last_beat = time.monotonic()
    schedules = rt.config.settings.schedules
    store = PatientJobStore(_outage, engine=rt.engine, tablename="apscheduler_jobs")
    # The heartbeat has its own thread, so slow tenants cannot starve the lease.
    executors = {"default": ThreadPoolExecutor(8), "lease": ThreadPoolExecutor(1)}
    scheduler = _Scheduler(
        jobstores={"default": store},
        executors=executors,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=JST,
    )
    scheduler.executors = tuple(executors.values())
    now = datetime.now(JST)
    wanted: dict[str, tuple[tuple[str, str | None], object, datetime | None]] = {
        "heartbeat": (("heartbeat", None), IntervalTrigger(seconds=HEARTBEAT.seconds), None),
        "outbox": (("outbox", None), IntervalTrigger(seconds=schedules.outbox_seconds), now),
        "desk": (("desk", None), IntervalTrigger(seconds=schedules.desk_seconds), now),
        "weekly-reports": (("weekly-reports", None), _cron(schedules.weekly_report, True), None),
        "monthly-reports": (
            ("monthly-reports", None),
            _monthly_cron(schedules.monthly_report),
            None,
        ),
        # Also once shortly after start, when the first inventory has found the devices.
        "trial-lifecycle": (
            ("trial-lifecycle", None),
            _cron(schedules.trial_lifecycle, False),
            now + FIRST_LIFECYCLE_DELAY,
        ),
    }
    if rt.config.settings.reports.seat_mail:
        wanted["seat-report"] = (("seat-report", None), _cron(schedules.seat_report, True), None)
    switched = rt.config.settings.reports
    for job_id, on in (("weekly-reports", switched.weekly), ("monthly-reports", switched.monthly)):
        if not on:
            del wanted[job_id]
    # Companies verified (or offboarded) while the service runs are followed by this job.
    wanted["tenants"] = (("tenants", None), IntervalTrigger(seconds=schedules.poll_seconds), None)
    wanted |= _tenant_jobs(rt, now)
    global _scheduler
    _scheduler = scheduler
    try:
        scheduler.start(paused=True)
        # Every job is added again below, so the stored ones are dropped unread: a job stored by
        # an older version may name a function that has moved, and reading it would fail loudly.
        scheduler.remove_all_jobs()
        for job_id, spec in wanted.items():
            _add(scheduler, job_id, spec)
    except SQLAlchemyError as err:  # a job table no wait mends: one line, not a traceback
        if scheduler.running:
            scheduler.shutdown(wait=False)
        raise StoreError(
            store.failure or f"the scheduler's job store failed: {reason(err)}"
        ) from err
    return scheduler
