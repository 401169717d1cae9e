"""One step, one audit trail, whichever front end took it: acknowledging, assigning, noting,
isolating and resolving a ticket through `edrtrial ticket …` and through the console write
the same audit records (action, target, tenant, detail), the actor alone telling them apart
(`cli:<login>`, `web:<username>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from test_web_ticket_actions import SAKURA, device_id, incident, operator_of, step

from edrtrial.cli.common import login_name
from edrtrial.cli.main import main
from edrtrial.models import AuditEvent

from web_support import Console

SUMMARY = {
    "when": "2026年12月6日 10:00頃",
    "what": "遠隔操作による不審なサービスの実行",
    "cause": "公開されていたリモートデスクトップへの不正ログイン",
    "handling": "端末をネットワークから隔離し、パスワードを変更",
    "effect": "ほかの端末への拡大は確認されていません",
}
NOTE = "電話で状況を確認。\n15時に折り返し。"
IDS = ("action", "note", "machine_action", "device")
"""Detail values that name this ticket's own rows (its note, its action, its device)."""


@pytest.fixture
def console(sandboxed_console: Console) -> Console:
    return sandboxed_console


def cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["--config", str(config), *args], env={"COLUMNS": "100"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def _same_for_any_ticket(value: Any, ticket_id: int) -> Any:
    if isinstance(value, dict):
        return {
            k: f"<{k}>" if k in IDS else _same_for_any_ticket(v, ticket_id)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_same_for_any_ticket(v, ticket_id) for v in value]
    if isinstance(value, str) and value.startswith(("cli:", "web:")):
        return "<the person's actor>"  # who asked for an action, kept in its record
    if isinstance(value, str):
        return value.replace(f"#{ticket_id}", "#<ticket>")
    return value


def trail(console: Console, ticket_id: int) -> list[tuple[str, str, int | None, Any, str]]:
    """The ticket's audit records, its own numbers left out: (who, action, target, tenant,
    detail), `who` being the front end for a person's step, else the service's own name."""
    with console.runtime.sessions() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target == f"ticket:{ticket_id}")
            .order_by(AuditEvent.id)
        ).all()
        return [
            (
                e.actor.split(":", 1)[0] + ":" if ":" in e.actor else e.actor,
                e.action,
                e.tenant_id,
                _same_for_any_ticket(e.detail, ticket_id),
                e.target.replace(str(ticket_id), "<ticket>"),
            )
            for e in events
        ]


def since_first_step(records: list[Any]) -> list[Any]:
    first = next(i for i, r in enumerate(records) if r[0] in ("cli:", "web:"))
    return records[first:]


def test_the_cli_and_the_console_write_the_same_audit_records(
    tmp_path: Path, console: Console
) -> None:
    config = tmp_path / "config.toml"
    by_cli, cli_device = incident(console)
    by_web, web_device = incident(console)

    cli(config, "ticket", "ack", str(by_cli))
    cli(config, "ticket", "assign", str(by_cli), "tanaka")
    cli(config, "ticket", "note", str(by_cli), NOTE)
    assert "succeeded" in cli(config, "ticket", "isolate", str(by_cli), "--yes")
    resolve = [f"--{key}={value}" for key, value in SUMMARY.items()]
    cli(config, "ticket", "resolve", str(by_cli), *resolve, "--classification", "truePositive")

    # The same person at the terminal and in the console: the ticket goes to the same name.
    op = operator_of(console, login_name())
    step(op, f"/tickets/{by_web}/acknowledge")
    step(op, f"/tickets/{by_web}/assign", {"assignee": "tanaka"})
    step(op, f"/tickets/{by_web}/note", {"text": NOTE})
    device = str(device_id(console, web_device))
    step(op, f"/tickets/{by_web}/isolate", {"device": device, "confirm": device})
    step(
        op,
        f"/tickets/{by_web}/resolve",
        {**SUMMARY, "classification": "truePositive", "report": "1"},
    )

    from_cli, from_web = trail(console, by_cli), trail(console, by_web)
    actions = [record[1] for record in from_web]
    for expected in (
        "ticket.acknowledged",
        "ticket.assigned",
        "ticket.note",
        "isolate.planned",
        "isolate.succeeded",
        "ticket.resolved",
    ):
        assert expected in actions
    people = [r[0] for r in from_web if r[0] in ("cli:", "web:")]
    assert len(people) >= 6 and set(people) == {"web:"}
    assert {r[0] for r in from_cli if r[0] in ("cli:", "web:")} == {"cli:"}
    # From the first step on (the poll's records name each incident's own numbers).
    swapped = [("web:" if r[0] == "cli:" else r[0], *r[1:]) for r in since_first_step(from_cli)]
    assert swapped == since_first_step(from_web)
    assert all(r[2] is not None and r[2] == from_web[0][2] for r in from_web)
    assert cli_device != web_device and console.world.is_isolated(SAKURA.tenant_id, cli_device)
