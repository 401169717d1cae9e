"""`applications import | add | review | import-predecessors`: applications into the store.

The commands join the `applications` group in `cli/main.py` (`APPLICATION_COMMANDS`).

Every application is judged by the programme's rules as it arrives (`programme/eligibility.py`);
the confirmation call is due `programme.call_business_days` business days of the desk's
calendar after the day it was received.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click
from rich.text import Text

from edrtrial.cli.common import actor, console, runtime_of, styled
from edrtrial.config import ProgrammeConfig
from edrtrial.db import transaction
from edrtrial.errors import IntakeError
from edrtrial.programme import applicants, intake, predecessors
from edrtrial.programme.applicants import Recorded
from edrtrial.programme.companies import company_named
from edrtrial.programme.eligibility import LETTERS, Verdict
from edrtrial.programme.intake import BadRow
from edrtrial.service import admission
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import to_jst

_VERDICT_STYLE = {"eligible": "green", "needs_review": "yellow", "not_eligible": "red"}


def _due_on(runtime: Runtime) -> applicants.DueOn:
    """The call's due day: N business days of the desk's calendar after the receipt day."""
    return admission.due_on(runtime.config.settings)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise IntakeError(f"{path}: {err.strerror or err}") from err


@click.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Import the web form's CSV export (UTF-8, UTF-8 with BOM, or Excel's CP932).

    Each bad row is reported with its line and reason and the good rows are imported;
    importing the same file again changes nothing. Exit 1 when some rows were bad."""
    runtime = runtime_of(ctx)
    programme = runtime.config.settings.programme
    read = intake.read_applications(_read(file), programme, source=file.name)
    done = applicants.import_rows(
        runtime.sessions,
        read.rows,
        programme,
        at=runtime.clock(),
        actor=actor(ctx),
        source=file.name,
        due_on=_due_on(runtime),
    )
    console.print(f"{file.name} ({read.encoding}): {len(read.rows) + len(read.bad)} rows")
    _report(done, read.bad)
    if read.bad:
        sys.exit(1)


def _report(done: Sequence[Recorded], bad: Sequence[BadRow]) -> None:
    """A line per row (bad ones with their reason), in the file's order, then the summary."""
    lines: list[tuple[int, Text | str]] = [
        (b.line, styled(f"line {b.line}: {b.reason}", "red")) for b in bad
    ]
    for r in done:
        if r.status == "already":
            text = f"line {r.line}: {r.company_key} already imported (#{r.application_id})"
        elif r.status == "repeat":
            text = (
                f"line {r.line}: {r.company_key} applied again: application #{r.application_id} "
                f"is a repeat of {r.repeat_of} (kept for review; no second journey)"
            )
        else:
            text = f"line {r.line}: {r.company_key} {r.company_name}: {_verdict(r)}"
        lines.append((r.line, styled(text, _VERDICT_STYLE.get(r.verdict, ""))))
        if r.status == "imported" and r.verdict != Verdict.ELIGIBLE:
            lines.extend((r.line, f"    {reason['ja']}") for reason in r.reasons)
    for _, line in sorted(lines, key=lambda pair: pair[0]):
        console.print(line)
    statuses = Counter(r.status for r in done)
    verdicts = Counter(r.verdict for r in done if r.status == "imported")
    console.print(
        f"{statuses['imported']} imported ({verdicts['eligible']} eligible, "
        f"{verdicts['needs_review']} needs review, {verdicts['not_eligible']} not eligible), "
        f"{statuses['already']} already imported, {statuses['repeat']} repeats, {len(bad)} bad"
    )


def _verdict(done: Recorded) -> str:
    """The rules' verdict, and when the call is due for an application it may go on with."""
    said = done.verdict.replace("_", " ")
    if done.call_due_on is not None and done.verdict != Verdict.NOT_ELIGIBLE:
        said += f", call due {done.call_due_on.isoformat()}"
    return said


def _attested(programme: ProgrammeConfig, given: str | None) -> dict[str, str]:
    """The attestation columns from `--attest all` or a list of keys or letters (ア,イ)."""
    attestations = programme.eligibility.attestations
    if given is None:
        return {}
    wanted = {part.strip() for part in given.split(",") if part.strip()}
    letters = {LETTERS[i]: a.key for i, a in enumerate(attestations)}
    keys = {a.key for a in attestations}
    if "all" in wanted:
        chosen = keys
    else:
        unknown = sorted(wanted - keys - set(letters))
        if unknown:
            known = ", ".join(f"{LETTERS[i]} {a.key}" for i, a in enumerate(attestations))
            raise IntakeError(
                f"--attest: no attestation {', '.join(unknown)} (all, or of: {known})"
            )
        chosen = {letters.get(w, w) for w in wanted}
    return {
        intake.attestation_column(i).header: "はい"
        for i, a in enumerate(attestations)
        if a.key in chosen
    }


@click.command("add")
@click.option("--name", required=True, help="The company's (or business's) name, as written.")
@click.option("--corporate-number", help="Its 法人番号 (13 digits).")
@click.option("--sole-proprietor", is_flag=True, help="A 個人事業主 (no 法人番号).")
@click.option("--representative", required=True, help="代表者名.")
@click.option("--address", required=True, help="所在地 of the main office.")
@click.option("--industry", required=True, help="業種, as in the SME table (製造業, 小売業, ...).")
@click.option("--capital", default="", help="資本金: 3億円, 50,000,000, ...")
@click.option("--employees", default="", help="従業員数.")
@click.option("--contact-name", default="", help="担当者名.")
@click.option("--contact-email", required=True, help="担当者メール.")
@click.option("--contact-phone", default="", help="担当者電話.")
@click.option("--language", default="ja", help="ja or en.")
@click.option("--course", default="", help="The course's key or label (default: the only one).")
@click.option("--seats", default="", help="予定利用者数 (planned users or devices).")
@click.option("--existing-edr", default=None, help="The EDR product it already runs, if any.")
@click.option("--prior-support", is_flag=True, help="It was supported by an earlier programme.")
@click.option("--tokyo-subsidy", is_flag=True, help="It uses an equivalent Tokyo subsidy.")
@click.option("--attest", default=None, help="Attestations made: all, or keys or letters (ア,イ).")
@click.pass_context
def add_command(ctx: click.Context, /, **options: str | bool | None) -> None:
    """Record one application (a form on paper, a phone call); it is judged like an import."""
    runtime = runtime_of(ctx)
    programme = runtime.config.settings.programme
    now = runtime.clock()
    if bool(options["corporate_number"]) == bool(options["sole_proprietor"]):
        raise IntakeError("give --corporate-number, or --sole-proprietor for a 個人事業主")

    def text(name: str) -> str:
        value = options[name]
        return value if isinstance(value, str) else ""

    edr = options["existing_edr"]
    cells = {
        intake.RECEIVED.header: to_jst(now).isoformat(),
        intake.KIND.header: "個人事業主" if options["sole_proprietor"] else "法人",
        intake.NUMBER.header: text("corporate_number"),
        intake.NAME.header: text("name"),
        intake.REPRESENTATIVE.header: text("representative"),
        intake.ADDRESS.header: text("address"),
        intake.INDUSTRY.header: text("industry"),
        intake.CAPITAL.header: text("capital"),
        intake.EMPLOYEES.header: text("employees"),
        intake.CONTACT_NAME.header: text("contact_name"),
        intake.CONTACT_EMAIL.header: text("contact_email"),
        intake.CONTACT_PHONE.header: text("contact_phone"),
        intake.LANGUAGE.header: text("language"),
        intake.COURSE.header: text("course"),
        intake.SEATS.header: text("seats"),
        intake.EXISTING_EDR.header: "はい" if edr else "いいえ",
        intake.EXISTING_EDR_NAME.header: edr if isinstance(edr, str) else "",
        intake.PRIOR_SUPPORT.header: "はい" if options["prior_support"] else "いいえ",
        intake.TOKYO_SUBSIDY.header: "はい" if options["tokyo_subsidy"] else "いいえ",
        **_attested(programme, text("attest") or None),
    }
    read = intake.application_from_cells(cells, 0, programme)
    if isinstance(read, BadRow):
        raise IntakeError(read.reason)
    with transaction(runtime.sessions) as session:
        done = applicants.record_application(
            session,
            read,
            programme,
            at=now,
            actor=actor(ctx),
            source="cli",
            due_on=_due_on(runtime),
        )
    if done.status == "repeat":
        console.print(
            styled(f"{done.company_key} applied before: a repeat of {done.repeat_of}", "yellow")
        )
    else:
        console.print(
            styled(
                f"{done.company_key} {done.company_name}: {_verdict(done)}",
                _VERDICT_STYLE.get(done.verdict, ""),
            )
        )
    for reason in done.reasons:
        console.print(f"    {reason['ja']}")


@click.command("review")
@click.argument("company")
@click.argument("decision", type=click.Choice(["eligible", "not-eligible"]))
@click.option("--reason", required=True, help="Why (kept with the decision, audited).")
@click.pass_context
def review_command(ctx: click.Context, company: str, decision: str, reason: str) -> None:
    """Decide an application the rules left for review (or overrule them), with the reason."""
    runtime = runtime_of(ctx)
    verdict = Verdict.ELIGIBLE if decision == "eligible" else Verdict.NOT_ELIGIBLE
    with transaction(runtime.sessions) as session:
        found = company_named(session, company)
        applicants.review(
            session, found, verdict, reason=reason, actor=actor(ctx), at=runtime.clock()
        )
        key = found.key
    console.print(styled(f"{key} {verdict.value}", _VERDICT_STYLE[verdict.value]))


@click.command("import-predecessors")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def import_predecessors_command(ctx: click.Context, file: Path) -> None:
    """Import the list of companies supported before (法人番号, 名称, 事業名, 年度); they are not
    eligible again. Importing the same list again adds nothing. Exit 1 when some rows were bad."""
    runtime = runtime_of(ctx)
    entries, bad = predecessors.read_predecessors(_read(file), source=file.name)
    with transaction(runtime.sessions) as session:
        added, known = predecessors.store_predecessors(session, entries, source=file.name)
    for row in bad:
        console.print(styled(f"line {row.line}: {row.reason}", "red"))
    console.print(f"{added} added, {known} already known, {len(bad)} bad")
    if bad:
        sys.exit(1)


#: The sub-commands `cli/main.py` adds to the `applications` group.
APPLICATION_COMMANDS = (
    import_command,
    add_command,
    review_command,
    import_predecessors_command,
)
