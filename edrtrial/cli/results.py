"""`edrtrial cohorts results`: the cohort's anonymised results as PDF and CSV files for the
programme's results report. The figures and their protection are `programme/cohort_results.py`
and `reports/cohort_results.py`; this only writes the files, owner-only."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import click

from edrtrial.cli.common import console, runtime_of
from edrtrial.errors import JourneyError
from edrtrial.files import write_private_bytes
from edrtrial.programme.cohort_results import cohort_report
from edrtrial.reports.cohort_results import results_csv, results_pdf
from edrtrial.timeutil import to_jst


def _month(value: str | None, today: date) -> date | None:
    if value is None:
        return None
    match = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise click.BadParameter(f"{value!r} is not a month: give YYYY-MM", param_hint="--month")
    month = date(int(match[1]), int(match[2]), 1)
    if month > today.replace(day=1):
        raise JourneyError(f"{value} has not begun yet: its results cannot be reported")
    return month


@click.command("results")
@click.argument("cohort")
@click.option("--pdf", "pdf_path", type=click.Path(path_type=Path), help="Write the PDF here.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the CSV here.")
@click.option("--month", help="One month (YYYY-MM) instead of the whole trial.")
@click.pass_context
def results_command(
    ctx: click.Context,
    cohort: str,
    pdf_path: Path | None,
    csv_path: Path | None,
    month: str | None,
) -> None:
    """The cohort's anonymised results (detections, incidents, response times, devices,
    decisions, pre-diagnosis against the end): every cell of fewer than 3 companies hidden,
    and nothing hidden that the totals would give back. PDF and/or CSV (UTF-8 with BOM)."""
    if pdf_path is None and csv_path is None:
        raise click.UsageError("give --pdf FILE, --csv FILE or both")
    runtime = runtime_of(ctx)
    first = _month(month, to_jst(runtime.clock()).date())
    with runtime.sessions() as session:
        results = cohort_report(session, runtime.config.settings.programme, cohort, first)
    if csv_path is not None:
        write_private_bytes(csv_path, results_csv(results))
        console.print(f"CSV written: {csv_path}", highlight=False)
    if pdf_path is not None:
        write_private_bytes(pdf_path, results_pdf(results))
        console.print(f"PDF written: {pdf_path}", highlight=False)
    hidden = "" if results.enough else " (fewer than 3: no figures shown)"
    console.print(f"{results.companies} companies, {results.period}{hidden}", highlight=False)


COHORT_COMMANDS = (results_command,)
