"""Each job's runs, recorded: its last success (when, how long, what it did) and its last
failure (when, the error's line), with how many times in a row it has failed.

`scheduler.run_job`, `edrtrial run-job` and `edrtrial poll` all run a job through `run`,
so `edrtrial status` and the desk's alarms see the same record whoever ran it. Recording
is a side note: a store too busy or down to take it never turns a job's outcome into a
failure, nor hides the job's own error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from edrtrial.db import transaction
from edrtrial.models import JobRun
from edrtrial.service import summaries
from edrtrial.service.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

SUMMARY_MAX = 200
ERROR_MAX = 300
"""How much of a summary and of an error's first line the record keeps."""


def run(rt: Runtime, job: str, company_key: str | None, work: Callable[[], T]) -> T:
    """Run `work` (the job `job`, for one company or all), record how it went, return its
    result or raise its error."""
    started = time.monotonic()
    try:
        result = work()
    except Exception as err:
        error = error_line(err)
        _record(rt, job, company_key, lambda row: _failed(row, rt.clock(), error))
        raise
    seconds = time.monotonic() - started
    summary = summarize(job, result)
    _record(rt, job, company_key, lambda row: _succeeded(row, rt.clock(), seconds, summary))
    return result


def _record(
    rt: Runtime, job: str, company_key: str | None, change: Callable[[JobRun], None]
) -> None:
    try:
        _write(rt, job, company_key or "", change)
    except IntegrityError:  # another process recorded this job's first run at the same moment
        _try_again(rt, job, company_key or "", change)
    except Exception:  # the store is locked or down: the job's outcome stands, unrecorded
        log.debug("run of job %s could not be recorded", job, exc_info=True)


def _try_again(rt: Runtime, job: str, company_key: str, change: Callable[[JobRun], None]) -> None:
    try:
        _write(rt, job, company_key, change)
    except Exception:
        log.debug("run of job %s could not be recorded", job, exc_info=True)


def _write(rt: Runtime, job: str, company_key: str, change: Callable[[JobRun], None]) -> None:
    with transaction(rt.sessions) as session:
        row = session.scalar(
            select(JobRun).where(JobRun.job == job, JobRun.company_key == company_key)
        )
        if row is None:
            row = JobRun(job=job, company_key=company_key, failures=0)
            session.add(row)
        change(row)


def _succeeded(row: JobRun, now: datetime, seconds: float, summary: str) -> None:
    row.last_success_at = now
    row.last_success_seconds = round(seconds, 3)
    row.last_success_summary = summary
    row.failures = 0
    row.failing_since = None


def _failed(row: JobRun, now: datetime, error: str) -> None:
    row.last_failure_at = now
    row.last_failure_error = error
    if not row.failures:
        row.failing_since = now
    row.failures = (row.failures or 0) + 1


def error_line(err: BaseException) -> str:
    """The error as one line: its type and the first line of its message, cut short.

    A database error is told in the database's words (`UNIQUE constraint failed: …`,
    `database is locked`), not SQLAlchemy's wrapping, whose first line may be its own hint.
    """
    cause = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}".rstrip(": ")[:ERROR_MAX]


def summarize(job: str, result: object) -> str:
    """A job's result as a short line for people (never a Python repr)."""
    text = summaries.describe(job, result)
    return " ".join(text.split())[:SUMMARY_MAX]
