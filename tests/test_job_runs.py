"""Every job's runs are recorded, whoever runs it (the scheduler, `run-job`, `poll`): its last
success with what it did, its last failure with the error's line, how many in a row; and
recording never makes a job fail."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.errors import ConfigError
from edrtrial.models import JobRun
from edrtrial.service import scheduler
from edrtrial.service.runs import run as record_run
from edrtrial.service.runtime import Runtime

from sandbox_config import settings, write_config

SAKURA = "sakura-seisakusho"


def config(tmp_path: Path, database_url: str) -> Path:
    """One company whose Defender secret is missing (its polls fail, the poll job does not);
    mail through a local relay whose password file is missing (the outbox job fails)."""
    data: dict[str, Any] = settings(database_url, state_dir=tmp_path / "no-sandbox")
    data["mail"]["smtp"] = {
        "host": "127.0.0.1",
        "port": 2525,
        "starttls": False,
        "username": "edr",
        "password": f"file:{tmp_path / 'relay.secret'}",
    }
    return write_config(tmp_path / "config.toml", data, companies=1)


@pytest.fixture
def runtime(tmp_path, now, engine, database_url) -> Iterator[Runtime]:
    rt = Runtime.open(load_config(config(tmp_path, database_url)))
    previous = scheduler._runtime
    scheduler._runtime = rt  # what build_scheduler does at start
    yield rt
    scheduler._runtime = previous
    rt.close()


def runs(rt: Runtime) -> dict[tuple[str, str], JobRun]:
    with rt.sessions() as session:
        return {(r.job, r.company_key): r for r in session.scalars(select(JobRun))}


def test_a_scheduled_job_records_its_success_with_what_it_did(runtime):
    scheduler.run_job("poll", SAKURA)
    record = runs(runtime)[("poll", SAKURA)]
    assert record.last_success_at is not None and record.last_success_seconds is not None
    summary = record.last_success_summary
    assert summary.startswith(f"1 tenant, 0 new alerts, 0 tickets opened; {SAKURA}: ")
    assert "cannot read secret file" in summary  # why that tenant was not polled
    assert (record.failures, record.last_failure_at) == (0, None)


def test_a_failing_job_counts_its_failures_in_a_row_until_it_succeeds(runtime, tmp_path):
    first = runtime.clock()
    for _ in range(3):
        with pytest.raises(ConfigError):
            scheduler.run_job("outbox")
    record = runs(runtime)[("outbox", "")]
    assert record.failures == 3
    assert record.failing_since is not None and record.failing_since >= first
    assert record.last_failure_error.startswith("ConfigError: ")
    assert "relay.secret" in record.last_failure_error
    assert record.last_success_at is None
    (tmp_path / "relay.secret").write_text("s3cret\n", encoding="utf-8")
    scheduler.run_job("outbox")
    record = runs(runtime)[("outbox", "")]
    assert (record.failures, record.failing_since) == (0, None)
    assert record.last_success_summary == "0 sent"
    assert record.last_failure_error.startswith("ConfigError: ")  # the last failure stays


def test_a_store_that_refuses_the_record_does_not_fail_the_job(runtime, tmp_path):
    with runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE job_run"))
    scheduler.run_job("trial-lifecycle")  # done, though not recorded
    with pytest.raises(ConfigError):  # the job's own error, not the record's
        scheduler.run_job("outbox")


def test_run_job_and_poll_by_hand_are_recorded_like_the_scheduler(runtime, tmp_path):
    path = str(tmp_path / "config.toml")
    result = CliRunner().invoke(main, ["--config", path, "run-job", "trial-lifecycle"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main, ["--config", path, "poll", "--company", SAKURA, "--no-deliver"]
    )
    assert result.exit_code == 1  # the company's secret is missing: its poll is a problem
    recorded = runs(runtime)
    assert recorded[("trial-lifecycle", "")].last_success_summary == ("0 offboarding tasks planned")
    assert recorded[("inventory", SAKURA)].last_success_summary == "0 devices seen"
    assert recorded[("poll", SAKURA)].last_success_at is not None


def test_a_job_failing_in_the_database_keeps_the_database_s_own_words(runtime):
    # SQLAlchemy puts its own hint first when an autoflush fails; the operator needs the cause.
    refused = IntegrityError(
        "INSERT INTO desk_alarm ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed")
    )
    refused.add_detail(
        "raised as a result of Query-invoked autoflush; consider using a "
        "session.no_autoflush block if this flush is occurring prematurely"
    )
    locked = OperationalError(
        "UPDATE tenant ...", {}, sqlite3.OperationalError("database is locked")
    )

    def failing(err: Exception) -> None:
        raise err

    for job, err in (("desk", refused), ("outbox", locked)):
        with pytest.raises(type(err)):
            record_run(runtime, job, None, lambda err=err: failing(err))
    recorded = runs(runtime)
    assert recorded[("desk", "")].last_failure_error == "IntegrityError: UNIQUE constraint failed"
    assert recorded[("outbox", "")].last_failure_error == "OperationalError: database is locked"
