"""One request, at most one action, against the sandbox: it records the isolation and then
answers 5xx, keeps the client waiting, or the sending process dies; the store ends with the
sandbox's one action and the device's real state."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions
from edrtrial.devices import actions
from edrtrial.models import AuditEvent, Device, OutboxMessage, ResponseAction, Ticket
from edrtrial.sandbox import SandboxServer, SandboxWorld
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime

import clock
from sandbox_config import sample_world, sandbox_config, serving

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
EDRTRIAL = str(Path(sys.executable).parent / "edrtrial")

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox at the test's now; its actions succeed at once."""
    with serving(sample_world(actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def control(server: SandboxServer, method: str, path: str, **body: Any) -> dict[str, Any]:
    """The sandbox's control API, as an operator or a training script calls it."""
    verify = ssl.create_default_context(cafile=str(server.ca_path))
    with httpx.Client(base_url=server.base_url, verify=verify, timeout=10) as http:
        response = http.request(method, path, json=body or None)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def machine_actions(server: SandboxServer, device: str) -> dict[str, int]:
    """The machine actions the sandbox holds for the device, per type (/sandbox/state)."""
    state = control(server, "GET", "/sandbox/state")
    sakura = next(t for t in state["tenants"] if t["tenant_id"] == SAKURA)
    counts: dict[str, int] = sakura["machine_actions"].get(device, {})
    return counts


def ticket_with_device(config: Path, world: SandboxWorld, database_url: str) -> tuple[str, str]:
    """A new high-severity incident on a new device, polled into a ticket."""
    cli(config, "db", "upgrade")
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    [alert] = world.add_alerts(
        SAKURA, "hands_on_keyboard", 1, incident_id="new", device_id=device, severity="high"
    )
    incident = next(a["incidentId"] for a in world.alerts(SAKURA) if a["id"] == alert)
    cli(config, "poll")
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        key = f"incident:{incident}"
        ticket = session.scalars(select(Ticket).where(Ticket.correlation_key == key)).one()
    return str(ticket.id), device


def isolations(database_url: str, device: str) -> list[tuple[str, str | None]]:
    """The device's isolations in the store (a playbook's superseded proposal left out)."""
    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        return [
            (a.status, a.source_action_id)
            for a in session.scalars(
                select(ResponseAction)
                .join(Device, ResponseAction.device_id == Device.id)
                .where(
                    Device.source_id == device,
                    ResponseAction.kind == "isolate",
                    ResponseAction.status != "superseded",
                )
                .order_by(ResponseAction.id)
            )
        ]


@pytest.mark.parametrize(
    ("fault", "connection"),
    [("error_after_record", {}), ("timeout_after_record", {"timeout_seconds": 1.0})],
    ids=["5xx after recording", "no answer in time"],
)
def test_an_isolation_the_sandbox_recorded_but_did_not_answer_is_one_action(
    tmp_path, sandbox, database_url, fault, connection
):
    config = sandbox_config(tmp_path, sandbox, database_url, connection=connection)
    tid, device = ticket_with_device(config, sandbox.world, database_url)
    settings = control(sandbox, "POST", "/sandbox/settings", action_fault=fault)
    assert (settings["action_fault"], settings["action_fault_repeat"]) == (fault, "once")

    out = cli(config, "ticket", "--by", "tanaka", "isolate", tid, "--yes", "--wait", "20").output

    assert "found at the EDR" in out
    assert machine_actions(sandbox, device) == {"Isolate": 1}
    [(status, adopted)] = isolations(database_url, device)
    assert status == "succeeded"
    assert adopted == sandbox.world.action_ids(SAKURA, device)[0]
    assert sandbox.world.is_isolated(SAKURA, device)
    again = cli(config, "ticket", "--by", "tanaka", "isolate", tid, "--yes", code=2)
    assert "already isolated" in again.output
    assert machine_actions(sandbox, device) == {"Isolate": 1}


def test_an_isolation_left_sending_by_a_killed_process_is_reconciled_by_the_desk_job(
    tmp_path, sandbox, database_url, now
):
    config = sandbox_config(tmp_path, sandbox, database_url)
    tid, device = ticket_with_device(config, sandbox.world, database_url)
    # The sandbox records the isolation and keeps the sender waiting; it is killed meanwhile.
    control(sandbox, "POST", "/sandbox/settings", action_fault="timeout_after_record")
    sender = subprocess.Popen(
        [EDRTRIAL, "--config", str(config), "ticket", "--by", "tanaka", "isolate", tid, "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clock.subprocess_env({**os.environ, "NO_COLOR": "1"}),
    )
    deadline = time.monotonic() + 60
    while sandbox.world.action_counts(SAKURA).get(device) != {"Isolate": 1}:
        assert sender.poll() is None and time.monotonic() < deadline, "the isolation never came"
        time.sleep(0.05)
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    [(status, _)] = isolations(database_url, device)
    assert status == "sending"

    moments = iter([now + timedelta(minutes=1), now + timedelta(minutes=6)])
    at = next(moments)
    rt = Runtime.open(load_config(config), clock=lambda: at)
    try:
        jobs.desk(rt)
        assert isolations(database_url, device)[0][0] == "sending"  # it might still be under way
        at = next(moments)
        jobs.desk(rt)
        with rt.sessions() as session:
            stored = session.scalars(select(Device).where(Device.source_id == device)).one()
            assert actions.device_state(session, stored).isolated
    finally:
        rt.close()

    [(status, adopted)] = isolations(database_url, device)
    assert (status, adopted) == ("succeeded", sandbox.world.action_ids(SAKURA, device)[0])
    assert machine_actions(sandbox, device) == {"Isolate": 1}


def test_an_adopted_isolation_that_already_succeeded_is_told_to_the_company(
    tmp_path, sandbox, database_url
):
    """The sandbox records the isolation, answers 503, and has carried it out by the time the
    action is found: the EDR's outcome is audited and the company mailed, as when followed."""
    config = sandbox_config(tmp_path, sandbox, database_url)
    tid, device = ticket_with_device(config, sandbox.world, database_url)
    control(sandbox, "POST", "/sandbox/settings", action_fault="error_after_record")

    cli(config, "ticket", "isolate", tid, "--yes", "--wait", "5")
    cli(config, "run-job", "desk")

    assert machine_actions(sandbox, device) == {"Isolate": 1}
    assert isolations(database_url, device)[0][0] == "succeeded"
    with make_sessions(make_engine(database_url))() as session:
        kinds = [m.kind for m in session.scalars(select(OutboxMessage))]
        events = [e.action for e in session.scalars(select(AuditEvent))]
    assert events.count("isolate.succeeded") == 1
    assert kinds.count("isolation-notice") == 1


def test_an_unanswered_isolation_is_listed_and_settled_by_the_operator(
    tmp_path, sandbox, database_url
):
    """A gateway fails before the EDR saw the request: nothing is found, the action waits
    `unconfirmed`; the operator looks in the console, says there is none, and isolates again:
    the sandbox holds one isolation, the one that was really sent."""
    config = sandbox_config(tmp_path, sandbox, database_url)
    tid, device = ticket_with_device(config, sandbox.world, database_url)
    control(sandbox, "POST", "/sandbox/settings", action_fault="error_before_record")

    out = cli(config, "ticket", "isolate", tid, "--yes").output
    assert "unconfirmed" in out
    refused = cli(config, "ticket", "isolate", tid, "--yes", code=2)
    assert "already under way" in refused.output
    listed = cli(config, "action", "list").output
    [action_id] = [line.split()[0] for line in listed.splitlines() if "unconfirmed" in line]
    [unanswered] = json.loads(cli(config, "action", "list", "--json").output)
    assert (unanswered["id"], unanswered["status"]) == (int(action_id), "unconfirmed")
    assert machine_actions(sandbox, device) == {}

    by = ("--by", "tanaka")  # whom the operator acts for, after the sub-command as before it
    settled = cli(config, "action", "settle", action_id.strip(), "--absent", *by).output
    assert "failed" in settled and "checked in the EDR's console" in settled
    cli(config, "ticket", "isolate", tid, "--yes", "--wait", "5")

    assert machine_actions(sandbox, device) == {"Isolate": 1}
    assert [s for s, _ in isolations(database_url, device)] == ["failed", "succeeded"]
    with make_sessions(make_engine(database_url))() as session:
        lost = session.scalars(select(AuditEvent).where(AuditEvent.action == "isolate.lost")).one()
    assert lost.actor.startswith("cli:") and lost.detail["checked_by"] == lost.actor
    assert lost.on_behalf_of == "tanaka"
    again = cli(config, "action", *by, "settle", action_id.strip(), "--absent", code=2)
    assert "nothing to settle" in again.output
