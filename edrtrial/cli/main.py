"""The `edrtrial` command: every job and operator task, from one place."""

from __future__ import annotations

from pathlib import Path

import click

from edrtrial.cli import (
    admission,
    companies,
    connection,
    desk,
    devices,
    intake,
    journey,
    journey_view,
    playbooks,
    programme,
    reports,
    results,
    service,
    status,
    trials,
    users,
)
from edrtrial.config import default_config_path


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (default: $EDRTRIAL_CONFIG, ./config.toml, ./config.example.toml)",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.version_option(package_name="edrtrial")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, log_level: str | None) -> None:
    """Run the EDR trial programme: polling, triage, desk, reports, offboarding."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path or default_config_path()
    ctx.obj["explicit"] = config_path is not None
    ctx.obj["log_level"] = log_level


for command in (
    *service.COMMANDS,
    *status.COMMANDS,
    *programme.COMMANDS,
    *reports.COMMANDS,
    *journey.COMMANDS,
    *desk.COMMANDS,
    *devices.COMMANDS,
    *playbooks.COMMANDS,
    *users.COMMANDS,
):
    main.add_command(command)
for command in companies.COMMANDS:
    journey.companies.add_command(command)
for command in devices.TICKET_COMMANDS:
    desk.ticket.add_command(command)
for command in intake.APPLICATION_COMMANDS:
    journey.applications.add_command(command)
for command in connection.TENANT_COMMANDS:
    programme.tenants.add_command(command)
for command in trials.TRIAL_COMMANDS:
    journey.trial.add_command(command)
for command in (*admission.APPLICATION_COMMANDS, *journey_view.APPLICATION_COMMANDS):
    journey.applications.add_command(command)
for command in (*admission.COHORT_COMMANDS, *results.COHORT_COMMANDS):
    journey.cohorts.add_command(command)
for command in (*admission.COMPANY_COMMANDS, *journey_view.COMPANY_COMMANDS):
    journey.company.add_command(command)
