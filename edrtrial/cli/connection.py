"""A company's connection: `tenants consent-url`, `consented`, `verify`, `unverified`.

Sub-commands of `tenants` (`cli/programme.py`); `main` adds them (TENANT_COMMANDS)."""

from __future__ import annotations

import sys

import click
from rich.text import Text

from edrtrial.cli.common import (
    ListTable,
    actor,
    config_of,
    console,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
)
from edrtrial.connectors.base import AccessCheck, Remedy
from edrtrial.db import transaction
from edrtrial.errors import JourneyError
from edrtrial.programme.verification import unverified
from edrtrial.service.consent import issue_consent_link, record_consented
from edrtrial.service.verification import Verification, verify_tenant
from edrtrial.states import JourneyState
from edrtrial.timeutil import to_jst


@click.command("consent-url")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the URL and the mail.")
@click.pass_context
def consent_url(ctx: click.Context, key: str, as_json: bool) -> None:
    """The admin-consent URL of the programme's app for an admitted company, and the mail
    (in the company's language) the secretariat sends its global administrator.

    Each call issues a new link (audited); earlier links of the company stay valid. The
    URL is printed whole on its own line, however narrow the terminal.
    """
    runtime = runtime_of(ctx)
    settings = config_of(ctx).settings
    with transaction(runtime.sessions) as session:
        issued = issue_consent_link(session, settings, key, actor=actor(ctx), at=runtime.clock())
    mail, name = issued.mail, issued.company_name
    if as_json:
        print_json(
            {
                "company": key,
                "url": issued.url,
                "mail": {"subject": mail.subject, "text": mail.text},
            }
        )
        return
    console.print(f"{key} ({name}): the admin-consent link for the programme's app")
    console.print(issued.url, soft_wrap=True, highlight=False)
    console.print(
        "Send it to the company's global administrator; once consented, record the reply "
        f"with: edrtrial tenants consented {key} --reply URL",
        soft_wrap=True,
    )
    console.print()
    console.print(styled("The mail to send:", "bold"))
    console.print(f"Subject: {mail.subject}", soft_wrap=True)
    # Our own lines around data the template already showed on one line each.
    console.print(Text(mail.text), soft_wrap=True, highlight=False)


@click.command("consented")
@click.argument("key")
@click.option("--reply", help="The whole address the administrator's browser landed on.")
@click.option("--tenant-id", help="The tenant id (GUID or domain) the company confirmed.")
@click.pass_context
def consented(ctx: click.Context, key: str, reply: str | None, tenant_id: str | None) -> None:
    """Record the company's admin consent: from the reply address (its state must be that of
    a link issued for this company), or the tenant id the secretariat entered. A consented
    company not yet verified may have its tenant id corrected while none of its data is in
    the store."""
    if (reply is None) == (tenant_id is None):
        raise JourneyError("give one of --reply URL or --tenant-id ID")
    runtime = runtime_of(ctx)
    settings = config_of(ctx).settings
    with transaction(runtime.sessions) as session:
        row = record_consented(
            session,
            settings,
            key,
            reply=reply,
            tenant_id=tenant_id,
            actor=actor(ctx),
            at=runtime.clock(),
        )
        recorded, state = row.external_id, JourneyState(row.company.state)
    console.print(f"{key}: consent recorded, tenant {recorded} ({state.value}, {state.ja})")
    console.print(f"next: edrtrial tenants verify {key}", soft_wrap=True)


@click.command("verify")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: each check.")
@click.pass_context
def verify(ctx: click.Context, key: str, as_json: bool) -> None:
    """Sign in to each API, read each endpoint the service needs, and check the permissions
    of isolation and offboarding: every check listed with its reason. All passed: the
    company's tenant is verified. Otherwise nothing changes and the exit status is 1."""
    runtime = runtime_of(ctx)
    found = verify_tenant(runtime, key, actor(ctx))
    if as_json:
        print_json(
            {
                "company": key,
                "tenant": found.tenant,
                "passed": found.passed,
                "state": found.state.value,
                "checks": [_check_record(c) for c in found.checks],
            }
        )
    else:
        _print_verification(found)
    if not found.passed:
        sys.exit(1)


def _check_record(check: AccessCheck) -> dict[str, object]:
    return {
        "name": check.name,
        "ok": check.ok,
        "reason": check.reason,
        "action": check.action,
        "remedy": check.remedy.value,
    }


def _print_verification(found: Verification) -> None:
    console.print(f"{found.company_key}: tenant {found.tenant}")
    for check in found.checks:
        mark = styled("✓", "green") if check.ok else styled("✗", "bold red")
        line = Text.assemble(mark, " ", check.name)
        if check.reason:
            line.append(f": {check.reason}")
        console.print(line, soft_wrap=True, highlight=False)
        if not check.ok and check.action:
            console.print(f"    what to do: {check.action}", soft_wrap=True, highlight=False)
    failed = [c for c in found.checks if not c.ok]
    if not failed:
        console.print(f"{found.company_key}: verified ({found.state.value}, {found.state.ja})")
        return
    remedies = {c.remedy for c in failed}
    if Remedy.NETWORK in remedies and len(remedies) == 1:
        console.print(
            f"{found.company_key}: not verified: the sign-in service or the APIs could not be "
            "reached (no connection, or no answer in time); nothing is known yet, try again "
            "later",
            soft_wrap=True,
        )
    else:
        console.print(
            f"{found.company_key}: not verified: {len(failed)} of {len(found.checks)} checks "
            f"failed; the company stays {found.state.value} ({found.state.ja})",
            soft_wrap=True,
        )
    if remedies & {Remedy.CONSENT, Remedy.PERMISSION}:
        console.print(
            f"the consent link for the company: edrtrial tenants consent-url {found.company_key}",
            soft_wrap=True,
        )


@click.command("unverified")
@list_options
@click.pass_context
def unverified_command(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """Tenants consented longer than `programme.unverified_days` and never verified, and
    devices first seen that long ago that ran no detection test, by company."""
    runtime = runtime_of(ctx)
    days = config_of(ctx).settings.programme.unverified_days
    now = runtime.clock()
    with runtime.sessions() as session:
        rows = unverified(session, now, days)
    if as_json:
        print_json(
            [
                {
                    "company": r.company_key,
                    "state": r.state.value,
                    "what": r.what,
                    "name": r.name,
                    "device_id": r.device_id or None,
                    "since": iso(r.since),
                    "days": r.days(now),
                }
                for r in rows
            ]
        )
        return
    table = ListTable("company", "state", "what", "name", "since", "days", flex=("name",))
    for r in rows:
        since = f"{to_jst(r.since):%Y-%m-%d}"
        table.add_row(r.company_key, r.state.ja, r.what, r.name, since, str(r.days(now)))
    print_list(table, wide=wide)
    console.print(
        f"{len(rows)} unverified after {days} days: a tenant since its consent (verify it: "
        "edrtrial tenants verify KEY), a device since first seen (run its detection test); "
        "since in JST",
        soft_wrap=True,
    )


TENANT_COMMANDS = (consent_url, consented, verify, unverified_command)
