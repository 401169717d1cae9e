"""The report archive: `reports list`, `reports show` and `reports resend`.

Every report mailed (a company's weekly or monthly report, an incident report, the
secretariat's seat report) is kept as the file its mail attached. These commands answer
"what was this company sent, when, to whom", and send a report again on purpose.
"""

from __future__ import annotations

from typing import Any

import click

from edrtrial.cli.common import (
    BY_HELP,
    ActingForGroup,
    ListTable,
    actor,
    company_key,
    console,
    deliver,
    fails_cleanly,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
    take_by,
)
from edrtrial.db import transaction
from edrtrial.errors import ArchiveError
from edrtrial.notify.archive import ArchivedSend, archive_listing, archived, archived_kinds
from edrtrial.notify.report_mail import resend_archived
from edrtrial.programme.companies import company_by_key
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import one_line


@click.group(cls=ActingForGroup)
@click.option("--by", help=BY_HELP)
@click.pass_context
@fails_cleanly
def reports(ctx: click.Context, by: str | None) -> None:
    """Every report sent, as the file its mail attached: list, show, resend.

    `--by NAME` goes before or after the sub-command.
    """
    take_by(ctx, by)


def _mail(row: ArchivedSend, *, wide: bool = True) -> str:
    """How the report's mail went, in a few words (when, to the minute with `wide`)."""
    if row.sent_at is not None:
        return f"sent {to_jst(row.sent_at):{'%Y-%m-%d %H:%M' if wide else '%m/%d'}}"
    if row.mail_status == "failed":
        return "given up"
    return row.mail_status or "no mail"


def _record(row: ArchivedSend) -> dict[str, Any]:
    r = row.record
    return {
        "id": r.id,
        "company": row.owner,
        "kind": r.kind,
        "period": {"from": r.period_start.isoformat(), "to": r.period_end.isoformat()},
        "ticket": r.ticket_id,
        "language": r.language,
        "recipients": list(r.recipients),
        "sequence": r.sequence,
        "created_at": iso(r.created_at),
        "by": r.actor,
        "mail": row.mail_status,
        "sent_at": iso(row.sent_at),
        "mail_error": row.mail_error,
        "filename": r.filename,
        "path": r.path,
        "size": r.size,
        "sha256": r.sha256,
    }


@reports.command("list")
@click.option("--company", help="Only this company (key).")
@click.option("--kind", help="Only this kind: weekly, monthly, period, incident, seats.")
@list_options
@click.pass_context
@fails_cleanly
def list_command(
    ctx: click.Context, company: str | None, kind: str | None, wide: bool, as_json: bool
) -> None:
    """Every archived report, oldest first: company, kind, period, recipients, how its mail
    went, which send (0 the first, then each re-send); with `--wide` the file."""
    runtime = runtime_of(ctx)
    key = company_key(runtime, company) if company else None
    with runtime.sessions() as session:
        company_id = None
        if key is not None:
            stored = company_by_key(session, key)
            assert stored is not None  # checked by company_key
            company_id = stored.id
        if kind is not None and kind not in (kinds := archived_kinds(session)):
            # A mistyped kind ("seat") would list nothing and say "no report archived yet".
            raise ArchiveError(f"no kind {one_line(kind)!r} of report (kinds: {', '.join(kinds)})")
        rows = archive_listing(session, company_id=company_id, kind=kind)
        if as_json:
            print_json([_record(row) for row in rows])
            return
        # The file's name repeats the company, kind and period, and cut to fit it said
        # nothing ("EDR検知レポート…"): the narrow list gives the room to the recipients,
        # `--wide` (and `reports show`) the file's path.
        table = ListTable(
            "id",
            "company",
            "kind",
            "period",
            "lang",
            "to",
            "mail",
            "#",
            *(("file",) if wide else ()),
            flex=("to",),
            whole=("company", "kind", "period", "mail"),
        )
        for row in rows:
            r = row.record
            end = r.period_end.isoformat()
            same_year = r.period_end.year == r.period_start.year
            period = f"{r.period_start}→{end if wide or not same_year else end[5:]}"
            if r.ticket_id is not None:
                period += f" #{r.ticket_id}"
            table.add_row(
                str(r.id),
                row.owner,
                r.kind,
                period,
                r.language,
                ", ".join(r.recipients),
                styled(_mail(row, wide=wide), "red" if row.mail_status == "failed" else ""),
                str(r.sequence),
                *((r.path,) if wide else ()),
            )
    print_list(table, wide=wide)
    if not rows:
        console.print("no report archived yet")
    else:
        console.print(
            "#: 0 the first send, 1, 2... each re-send; "
            + ("file: the file its mail attached" if wide else "the file: reports show ID, --wide")
        )


@reports.command("show")
@click.argument("report_id", type=int)
@click.pass_context
@fails_cleanly
def show_command(ctx: click.Context, report_id: int) -> None:
    """Where an archived report's file is, and what it was: open it with any PDF viewer."""
    runtime = runtime_of(ctx)
    with runtime.sessions() as session:
        found = archived(session, report_id)
        same = archive_listing(session, company_id=found.company_id, kind=found.kind)
        row = next(each for each in same if each.record.id == found.id)
        r = row.record
        lines = [
            (
                "report",
                f"{r.id} ({r.kind}, {row.owner}, {r.period_start} to {r.period_end}"
                + (f", ticket #{r.ticket_id})" if r.ticket_id is not None else ")"),
            ),
            ("file", r.path or "(purged with its company)"),
            ("sent as", r.filename),
            ("to", ", ".join(r.recipients)),
            ("subject", r.subject),
            ("archived", f"{to_jst(r.created_at):%Y-%m-%d %H:%M} JST by {r.actor}"),
            ("mail", _mail(row) + (f": {row.mail_error}" if row.mail_error else "")),
        ]
    for label, value in lines:
        console.print(f"{label}: {one_line(value)}", soft_wrap=True, highlight=False)


@reports.command("resend")
@click.argument("report_id", type=int)
@click.option("--to", "to", help="Another address to send it to (default: its recipients).")
@click.pass_context
@fails_cleanly
def resend_command(ctx: click.Context, report_id: int, to: str | None) -> None:
    """Send an archived report again as it was sent (the same file), audited as yours."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        queued = resend_archived(session, report_id, actor=actor(ctx), now=runtime.clock(), to=to)
        record = queued.record
        assert record is not None  # a re-send is archived before it is queued
        said = (
            f"report {report_id} queued again as report {record.id} "
            f"(send {record.sequence}) to {queued.message.recipient}"
        )
    console.print(one_line(said), soft_wrap=True, highlight=False)
    deliver(runtime)


COMMANDS = (reports,)
