"""The schedule is rebuilt from the config with stable ids."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from sqlalchemy import text

from edrtrial.config import load_config
from edrtrial.service import scheduler
from edrtrial.service.runtime import Runtime

from sandbox_config import settings, write_config


def config_for(tmp_path: Path, database_url: str, companies: int) -> Path:
    data = settings(database_url, companies_count=companies)
    return write_config(tmp_path / f"config{companies}.toml", data)


def job_ids(tmp_path: Path, database_url: str, companies: int) -> set[str]:
    runtime = Runtime.open(load_config(config_for(tmp_path, database_url, companies)))
    sched = scheduler.build_scheduler(runtime)
    try:
        return {job.id for job in sched.get_jobs()}
    finally:
        sched.shutdown(wait=False)
        runtime.close()


def test_jobs_have_stable_ids_and_a_restart_drops_what_the_config_no_longer_has(
    tmp_path, engine, database_url
):
    common = {"heartbeat", "outbox", "desk", "weekly-reports", "trial-lifecycle"}
    assert job_ids(tmp_path, database_url, 2) == common | {
        "poll:sakura-seisakusho",
        "inventory:sakura-seisakusho",
        "poll:midori-shoji",
        "inventory:midori-shoji",
    }
    assert job_ids(tmp_path, database_url, 1) == common | {
        "poll:sakura-seisakusho",
        "inventory:sakura-seisakusho",
    }


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
