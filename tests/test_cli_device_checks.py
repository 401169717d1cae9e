"""`ticket isolate` against the sandbox: what the operator is told before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.models import Alert, Device
from edrtrial.sandbox import SandboxServer

from sandbox_config import sample_world, sandbox_config, serving

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"
SUMMARY = [
    *("--when", "11/25 10:00", "--what", "不審なPowerShell", "--cause", "添付ファイル"),
    *("--handling", "調査", "--effect", "拡大なし"),
]


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its data made at the test's now (the sample trials are dated around it)."""
    with serving(sample_world(actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def ticket_of_new_device(
    config: Path, sandbox: SandboxServer, database_url: str
) -> tuple[str, str]:
    """A new sakura device with a high alert, polled and inventoried: (ticket id, device id)."""
    cli(config, "db", "upgrade")
    device = sandbox.world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    sandbox.world.add_alerts(SAKURA, "hands_on_keyboard", 1, device_id=device, severity="high")
    cli(config, "poll")
    cli(config, "run-job", "inventory")
    with make_sessions(make_engine(database_url))() as session:
        ticket = next(
            a.ticket_id
            for a in session.scalars(select(Alert).where(Alert.ticket_id.is_not(None)))
            if device in a.device_source_ids
        )
    return str(ticket), device


def test_isolating_a_device_silent_for_days_warns_that_it_waits_and_still_sends(
    tmp_path, now, sandbox, database_url
):
    config = sandbox_config(tmp_path, sandbox, database_url)
    ticket, device = ticket_of_new_device(config, sandbox, database_url)
    with transaction(make_sessions(make_engine(database_url))) as session:
        row = session.scalars(select(Device).where(Device.source_id == device)).one()
        row.last_seen = now - timedelta(days=5, hours=1)
    output = cli(config, "ticket", "isolate", ticket, "--yes").output
    assert "has not reported for 5 days: the action waits until it reports" in output
    assert sandbox.world.action_counts(SAKURA)[device] == {"Isolate": 1}


def test_isolating_from_a_resolved_ticket_asks_to_reopen_it_first_and_sends_nothing(
    tmp_path, sandbox, database_url
):
    config = sandbox_config(tmp_path, sandbox, database_url)
    ticket, device = ticket_of_new_device(config, sandbox, database_url)
    cli(config, "ticket", "resolve", ticket, *SUMMARY)
    refused = cli(config, "ticket", "isolate", ticket, "--yes", code=2).output
    assert f"ticket #{ticket} is resolved; reopen ticket #{ticket} first" in refused
    assert device not in sandbox.world.action_counts(SAKURA)
