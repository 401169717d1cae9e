"""Against the sandbox: a company's decision and trial end are what they are when we send.

The sandbox's midori-shoji ended its trial undecided; its devices get offboarding tasks.
The operator is asked before anything is sent; when the company decides to continue after
its tasks were planned, nothing may reach its devices, and the audit says why.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.devices.offboarding import execute_offboarding
from edrtrial.models import AuditEvent, ResponseAction, Tenant, Trial
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks
from edrtrial.sandbox import SandboxServer
from edrtrial.service.runtime import Runtime

from sandbox_config import sample_companies, sample_world, serving, settings, write_config

MIDORI = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c02"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its data made at the test's now (the sample trials are dated around it)."""
    with serving(sample_world(11, actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def cli(config: Path, *args: str, code: int = 0, answer: str | None = None) -> Result:
    result = CliRunner().invoke(
        main, ["--config", str(config), *args], input=answer, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result


def programme(tmp_path: Path, server: SandboxServer, database_url: str) -> dict[str, Any]:
    return settings(
        database_url,
        base_url=server.base_url,
        state_dir=server.state_dir,
        mail_dir=tmp_path / "mail",
    )


def midori(data: dict[str, Any]) -> dict[str, Any]:
    """midori-shoji's block as the store was given it."""
    return next(c for c in sample_companies(data) if c["key"] == "midori-shoji")


def offboards_in_sandbox(server: SandboxServer) -> int:
    """Offboard machine actions the sandbox received for midori, read from /sandbox/state."""
    state = httpx.get(
        f"{server.base_url}/sandbox/state", verify=ssl.create_default_context(cafile=server.ca_path)
    ).json()
    [tenant] = [t for t in state["tenants"] if t["tenant_id"] == MIDORI]
    return sum(counts.get("Offboard", 0) for counts in tenant["machine_actions"].values())


def planned_tasks(config: Path, sandbox: SandboxServer) -> int:
    """Poll midori and plan its offboarding; how many tasks were planned."""
    cli(config, "db", "upgrade")
    cli(config, "poll", "--company", "midori-shoji")
    cli(config, "run-job", "inventory")
    planned = re.search(r"(\d+) new task\(s\) planned", cli(config, "offboarding", "--plan").output)
    assert planned is not None
    return int(planned.group(1))


def test_offboarding_asks_first_and_a_no_sends_nothing(tmp_path, sandbox, database_url):
    data = programme(tmp_path, sandbox, database_url)
    config = write_config(tmp_path / "config.toml", data)
    tasks = planned_tasks(config, sandbox)
    assert tasks > 0
    end = midori(data)["trial"]["end"]

    declined = cli(
        config, "offboarding", "--company", "midori-shoji", "--execute", answer="n\n"
    ).output
    question = f"Uninstall the EDR from {tasks} device(s) of 緑商事株式会社"
    assert question in declined
    assert f"decision: undecided, trial ended {end.isoformat()}" in declined
    assert offboards_in_sandbox(sandbox) == 0


def test_a_task_planned_while_undecided_and_sent_after_continue_is_cancelled_at_send_time(
    tmp_path, now, sandbox, database_url
):
    config = write_config(tmp_path / "config.toml", programme(tmp_path, sandbox, database_url))
    tasks = planned_tasks(config, sandbox)
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        # Decided through a way that does not cancel planned tasks (a command to come, an
        # edit of the store): only the check at send time stands between them and the EDR.
        trial = session.scalars(
            select(Trial)
            .join(Tenant, Tenant.company_id == Trial.company_id)
            .where(Tenant.external_id == MIDORI)
        ).one()
        trial.decision = "continue"
    rt = Runtime(load_config(config), engine, load_playbooks(default_playbook_paths()))
    try:
        [tenant] = rt.tenants("midori-shoji")
        sent = execute_offboarding(
            rt.sessions, tenant.id, rt.connector(tenant), "cli:operator", rt.clock
        )
    finally:
        rt.close()
    assert sent == []
    assert offboards_in_sandbox(sandbox) == 0
    with sessions() as session:
        statuses = session.scalars(
            select(ResponseAction.status).where(
                ResponseAction.tenant_id == tenant.id, ResponseAction.kind == "offboard"
            )
        ).all()
        audits = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.cancelled")
        ).all()
    assert statuses == ["cancelled"] * tasks
    assert len(audits) == tasks and {e.actor for e in audits} == {"cli:operator"}
    assert all(e.detail["when"] == "at send time" for e in audits)
    assert all("decided to continue" in e.detail["reason"] for e in audits)
