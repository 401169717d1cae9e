"""The command groups of the programme's journey; their commands live beside their domain's
module (`cli/intake.py`, `cli/admission.py`, `cli/connection.py`, `cli/trials.py`, ...) and
are added to these groups there, so each group is one place in `edrtrial --help`."""

from __future__ import annotations

import click

from edrtrial.cli.common import BY_HELP, ActingForGroup, take_by


def _group(name: str, doc: str) -> click.Group:
    @click.group(name, cls=ActingForGroup)
    @click.option("--by", help=BY_HELP)
    @click.pass_context
    def group(ctx: click.Context, by: str | None) -> None:
        take_by(ctx, by)

    group.help = doc
    return group


applications = _group(
    "applications",
    "Applications: import the web form's CSV, eligibility, the confirmation call, "
    "pre-diagnosis. `--by NAME` (whom you act for) goes before or after the sub-command.",
)
cohorts = _group("cohorts", "Cohorts: their course, capacity, places and waiting list.")
companies = _group("companies", "Companies in the store: import them from an old config file.")
company = _group("company", "One company's whole journey: where it stands and what is due next.")
trial = _group("trial", "A company's trial: its start, the decision at its end, an extension.")

COMMANDS = (applications, cohorts, companies, company, trial)
