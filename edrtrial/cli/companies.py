"""`companies import-config` (an old config file's companies into the store, once) and
`companies list`: sub-commands of the `companies` group (`cli/journey.py`), added there by
`cli/main.py`."""

from __future__ import annotations

from pathlib import Path

import click

from edrtrial.cli.common import (
    ListTable,
    actor,
    console,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
)
from edrtrial.config import load_companies
from edrtrial.db import transaction
from edrtrial.programme.companies import Imported, company_rows, import_companies
from edrtrial.states import JourneyState

_STYLE = {"imported": "green", "present": "", "refused": "red"}


@click.command("import-config")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cohort", "cohort", help="The cohort they join (default: one named 'imported').")
@click.pass_context
def import_config(ctx: click.Context, file: Path, cohort: str | None) -> None:
    """Move the [[companies]] blocks of FILE (a whole config file, or a file of those blocks
    only) into the store, once: each company with its tenant, trial and journey as its trial
    stands today. A key already in the store is left as it is; a tenant another company
    holds is refused. Exits 1 when one was refused."""
    runtime = runtime_of(ctx)
    blocks = load_companies(file)
    if not blocks:
        console.print(f"{file}: no [[companies]] blocks; nothing to import")
        return
    with transaction(runtime.sessions) as session:
        done = import_companies(
            session,
            blocks,
            runtime.config.settings.programme,
            source=str(file),
            actor=actor(ctx),
            at=runtime.clock(),
            cohort=cohort,
            base_dir=_elsewhere(file, runtime.config.path),
        )
    for result in done:
        console.print(styled(f"{result.key}: {_said(result)}", _STYLE[result.outcome]))
    imported = sum(r.outcome == "imported" for r in done)
    refused = sum(r.outcome == "refused" for r in done)
    console.print(
        f"{imported} imported, {len(done) - imported - refused} already in the store, "
        f"{refused} refused"
    )
    if (
        imported
        and runtime.config.settings.companies
        and file.resolve() == (runtime.config.path.resolve())
    ):
        console.print(f"now remove the [[companies]] blocks from {file}")
    if refused:
        ctx.exit(1)


def _elsewhere(file: Path, config: Path) -> Path | None:
    """FILE's directory when it is not the config's: its relative paths start there."""
    here = file.resolve().parent
    return None if here == config.resolve().parent else here


def _said(result: Imported) -> str:
    if result.outcome == "imported":
        return f"imported, {JourneyState(result.detail).ja} ({result.detail})"
    if result.outcome == "present":
        return "already in the store: left as it is"
    return f"refused: {result.detail}"


@click.command("list")
@list_options
@click.pass_context
def list_companies(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """Every company in the store: key, name, journey state, cohort, tenant."""
    runtime = runtime_of(ctx)
    with runtime.sessions() as session:
        records = [
            {
                "key": row.key,
                "name": row.name,
                "state": row.state,
                "state_ja": JourneyState(row.state).ja,
                "cohort": row.cohort,
                "tenant": row.tenant,
            }
            for row in company_rows(session)
        ]
    if as_json:
        print_json(records)
        return
    table = ListTable("company", "name", "state", "cohort", "tenant", flex=("name",))
    for r in records:
        state = f"{r['state_ja']} ({r['state']})"
        table.add_row(r["key"], r["name"], state, r["cohort"] or "", r["tenant"] or "")
    print_list(table, wide=wide)
    if not records:
        console.print("no company in the store")


COMMANDS = (import_config, list_companies)
