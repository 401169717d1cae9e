"""Waiting out a store that is locked or out of reach, and saying so once.

APScheduler writes its job store from its own thread, outside any job (`update_job` after
each run it starts): one "database is locked" there used to end that thread while the
process stayed up, idle. `PatientJobStore` keeps the persistent job store but retries its
calls with backoff while the store is only busy or unreachable (`edrtrial.db.
store_unavailable`), and gives up, naming why, when it stays so too long or is broken:
`serve`'s watchdog then ends the process for a supervisor to restart.

`StoreOutage` is what the log says about it: one line when the store goes down (whoever
meets it first, the job store or a job) and one when a write goes through again, not one
per retry. Only an outage is told: a SQLite write that loses a race between the service's
own threads fails at once with the same "database is locked" and goes through on the next
try; it is logged at debug, not as the store going down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy.exc import SQLAlchemyError

from edrtrial.db import reason, store_unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 30.0
OUTAGE_AFTER_SECONDS = 10.0
"""A store refusing calls for this long (counted from the start of the first refused call,
so one call that waited out SQLite's 30 s busy timeout is enough) is down, and the log
says so; a shorter refusal is a race lost, retried without a word above debug."""
GIVE_UP_AFTER_SECONDS = 15 * 60.0
"""A store down longer than this stops the service (exit non-zero) rather than leave it
waiting unseen: a supervisor restarts it, and the restart says what is wrong."""


class StoreOutage:
    """The store's state as the log tells it: down (since when, why) or up; and the one
    way to wait it out (`patiently`), which a shutdown ends at once (`stopping`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._told = False
        self.stopping = threading.Event()

    def down(self, err: BaseException, where: str, started: float | None = None) -> None:
        """The store refused `where` (a call begun at `started`, monotonic) for now; the
        outage is logged once, when it has lasted `OUTAGE_AFTER_SECONDS`."""
        now = time.monotonic()
        begun = now if started is None else min(started, now)
        with self._lock:
            if self._since is None or begun < self._since:
                self._since = begun
            if self._told:
                return
            if now - self._since < OUTAGE_AFTER_SECONDS:
                log.debug("store refused %s for now: %s", where, reason(err))
                return
            self._told = True
        log.error("store unavailable (%s: %s); retrying until it answers", where, reason(err))

    def up(self) -> None:
        """A write went through: the outage, if any, is over; logged once if it was told."""
        with self._lock:
            since, told = self._since, self._told
            self._since, self._told = None, False
        if since is not None and told:
            log.warning("store available again after %d s", time.monotonic() - since)

    def seconds(self) -> float:
        """How long the store has been down (0 when it is up)."""
        with self._lock:
            return 0.0 if self._since is None else time.monotonic() - self._since

    def patiently(
        self, what: str, call: Callable[[], T], *, give_up_after: float, writes: bool
    ) -> T:
        """`call()`, again with backoff while the store is unavailable, for at most
        `give_up_after` seconds (then its last error is raised, as is any other error).
        `writes`: its success proves the store takes writes again (a SQLite reader passes
        while another connection holds the write lock)."""
        started = time.monotonic()
        delay = FIRST_RETRY_SECONDS
        while True:
            attempt = time.monotonic()
            try:
                result = call()
            except SQLAlchemyError as err:
                if not store_unavailable(err):
                    raise
                self.down(err, what, attempt)
                waited = time.monotonic() - started
                if waited >= give_up_after or self.stopping.wait(
                    min(delay, give_up_after - waited)
                ):
                    raise
                delay = min(delay * 2, LONGEST_RETRY_SECONDS)
                continue
            if writes:
                self.up()
            return result


class PatientJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store, waiting out a busy or unreachable store.

    `failure` is set (and the call raises) when it gives up: the store stayed unavailable
    past `give_up_after` seconds, or failed in a way waiting cannot mend (a dropped table,
    a damaged file). `stop` ends a wait at once, for a shutdown.
    """

    def __init__(
        self,
        outage: StoreOutage,
        give_up_after: float = GIVE_UP_AFTER_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.outage = outage
        self.give_up_after = give_up_after
        self.failure: str | None = None

    def stop(self) -> None:
        """End any wait now (the scheduler is shutting down)."""
        self.outage.stopping.set()

    def shutdown(self) -> None:
        """Leave the engine open: it is the runtime's, which closes it, and jobs still
        running when the scheduler shuts down go on using it until they end."""

    def _patiently(self, what: str, call: Callable[[], T], *, writes: bool) -> T:
        try:
            return self.outage.patiently(
                f"the scheduler's {what}", call, give_up_after=self.give_up_after, writes=writes
            )
        except SQLAlchemyError as err:
            if not store_unavailable(err):
                self.failure = f"the scheduler's job store failed ({what}): {reason(err)}"
            elif not self.outage.stopping.is_set():
                self.failure = (
                    f"the store has been unavailable for {int(self.outage.seconds())} s "
                    f"({reason(err)}); the scheduler cannot go on"
                )
            raise

    def lookup_job(self, job_id: str) -> Job | None:
        return self._patiently(
            "job lookup", lambda: super(PatientJobStore, self).lookup_job(job_id), writes=False
        )

    def get_due_jobs(self, now: datetime) -> list[Job]:
        return self._patiently(
            "due jobs", lambda: super(PatientJobStore, self).get_due_jobs(now), writes=False
        )

    def get_next_run_time(self) -> datetime | None:
        found: datetime | None = self._patiently(
            "next run time", lambda: super(PatientJobStore, self).get_next_run_time(), writes=False
        )
        return found

    def get_all_jobs(self) -> list[Job]:
        return self._patiently(
            "job list", lambda: super(PatientJobStore, self).get_all_jobs(), writes=False
        )

    def add_job(self, job: Job) -> None:
        self._patiently("job write", lambda: super(PatientJobStore, self).add_job(job), writes=True)

    def update_job(self, job: Job) -> None:
        self._patiently(
            "job update", lambda: super(PatientJobStore, self).update_job(job), writes=True
        )

    def remove_job(self, job_id: str) -> None:
        self._patiently(
            "job removal", lambda: super(PatientJobStore, self).remove_job(job_id), writes=True
        )

    def remove_all_jobs(self) -> None:
        self._patiently(
            "job removal", lambda: super(PatientJobStore, self).remove_all_jobs(), writes=True
        )
