"""The scheduler: APScheduler 3 with a persistent job store, one owner per store.

It only schedules: every job is a function in `edrtrial.service.jobs`. Job ids are stable
(`poll:{company}`), and the schedule is rebuilt from the config at each start.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import transaction
from edrtrial.errors import LockHeldError
from edrtrial.models import ServiceLock
from edrtrial.service import jobs, runs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import JST, utcnow

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"
HEARTBEAT = timedelta(seconds=20)
STALE_AFTER = timedelta(seconds=90)
FIRST_LIFECYCLE_DELAY = timedelta(seconds=60)

_runtime: Runtime | None = None


def holder_id() -> str:
    """Names this process in the lock, so the refusal message says who holds it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_lock(sessions: sessionmaker[Session], holder: str, now: datetime) -> None:
    """Take or renew the store's scheduler lease, or raise LockHeldError naming its holder."""
    stale = now - STALE_AFTER
    try:
        with transaction(sessions) as session:
            # One conditional UPDATE: renew our own lease, or take over a dead one.
            taken = session.execute(
                update(ServiceLock)
                .where(
                    ServiceLock.name == LOCK_NAME,
                    or_(ServiceLock.holder == holder, ServiceLock.heartbeat_at < stale),
                )
                .values(holder=holder, heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return
            lock = session.get(ServiceLock, LOCK_NAME)
            if lock is None:
                session.add(
                    ServiceLock(name=LOCK_NAME, holder=holder, acquired_at=now, heartbeat_at=now)
                )
                return
            raise LockHeldError(
                f"another edrtrial scheduler ({lock.holder}) owns this store since "
                f"{lock.acquired_at.astimezone(JST):%Y-%m-%d %H:%M} JST (last heartbeat "
                f"{lock.heartbeat_at.astimezone(JST):%H:%M:%S}); stop it first. If it "
                f"crashed, its lease expires {int(STALE_AFTER.total_seconds())} s after "
                "its last heartbeat."
            )
    except IntegrityError as err:  # another process inserted the lease at the same moment
        raise LockHeldError("another edrtrial scheduler took this store's lease just now") from err


def release_lock(sessions: sessionmaker[Session], holder: str) -> None:
    """Give the lease back on a clean shutdown."""
    with transaction(sessions) as session:
        lock = session.get(ServiceLock, LOCK_NAME)
        if lock is not None and lock.holder == holder:
            session.delete(lock)


def run_job(name: str, company_key: str | None = None) -> None:
    """Entry point the job store refers to by name; runs one job on this process's runtime."""
    rt = _runtime
    if rt is None:
        raise RuntimeError("scheduler job started without a runtime")
    try:
        if name == "heartbeat":
            heartbeat(rt)  # the lease row is its record
        elif company_key is not None:
            runs.run(rt, name, company_key, lambda: jobs.TENANT_JOBS[name](rt, company_key))
        else:
            runs.run(rt, name, None, lambda: jobs.JOBS[name](rt))
    except Exception:
        # APScheduler would log this too, but without saying which job and tenant failed.
        log.exception("job %s%s failed", name, f" ({company_key})" if company_key else "")
        raise


def heartbeat(rt: Runtime) -> None:
    """Renew the lease; a scheduler that lost it stops at once rather than run beside another."""
    try:
        acquire_lock(rt.sessions, holder_id(), utcnow())
    except LockHeldError as err:
        log.critical("scheduler lease lost, stopping: %s", err)
        _on_lease_lost()


def _default_lease_lost() -> None:
    raise SystemExit(3)


_on_lease_lost: Callable[[], None] = _default_lease_lost


def on_lease_lost(callback: Callable[[], None]) -> None:
    """What `serve` does when the heartbeat finds another scheduler owns the store."""
    global _on_lease_lost
    _on_lease_lost = callback


def _cron(spec: str, weekly: bool) -> CronTrigger:
    day, _, clock = spec.partition(" ") if weekly else ("*", "", spec)
    hour, minute = clock.split(":")
    return CronTrigger(
        day_of_week=day if weekly else "*", hour=int(hour), minute=int(minute), timezone=JST
    )


def build_scheduler(rt: Runtime) -> BackgroundScheduler:
    """A scheduler whose jobs (stable ids) are rebuilt from the config."""
    global _runtime
    _runtime = rt
    schedules = rt.config.settings.schedules
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=rt.engine, tablename="apscheduler_jobs")},
        # The heartbeat has its own thread, so slow tenants cannot starve the lease.
        executors={"default": ThreadPoolExecutor(8), "lease": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone=JST,
    )
    now = datetime.now(JST)
    wanted: dict[str, tuple[tuple[str, str | None], object, datetime | None]] = {
        "heartbeat": (("heartbeat", None), IntervalTrigger(seconds=HEARTBEAT.seconds), None),
        "outbox": (("outbox", None), IntervalTrigger(seconds=schedules.outbox_seconds), now),
        "desk": (("desk", None), IntervalTrigger(seconds=schedules.desk_seconds), now),
        "weekly-reports": (("weekly-reports", None), _cron(schedules.weekly_report, True), None),
        # Also once shortly after start, when the first inventory has found the devices.
        "trial-lifecycle": (
            ("trial-lifecycle", None),
            _cron(schedules.trial_lifecycle, False),
            now + FIRST_LIFECYCLE_DELAY,
        ),
    }
    for tenant in rt.tenants():
        key = tenant.company_key
        wanted[f"inventory:{key}"] = (
            ("inventory", key),
            IntervalTrigger(minutes=schedules.inventory_minutes),
            now,
        )
        # The first poll waits for the first inventory, so alerts find their devices.
        wanted[f"poll:{key}"] = (
            ("poll", key),
            IntervalTrigger(seconds=schedules.poll_seconds),
            now + timedelta(seconds=3),
        )
    scheduler.start(paused=True)
    # Every job is added again below, so the stored ones are dropped unread: a job stored by
    # an older version may name a function that has moved, and reading it would fail loudly.
    scheduler.remove_all_jobs()
    for job_id, (args, trigger, first) in wanted.items():
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
    return scheduler
