"""The desk's queue in Debian's chromium: an operator keeps the queue open, the sandbox's
Defender raises an alert, the scheduler's poll turns it into a ticket, and its row appears
in the open page without a reload; the ticket's page then shows the alert's evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from edrtrial.models import Ticket
from edrtrial.sandbox import SandboxServer
from edrtrial.service import jobs

from browser import sign_in
from web_support import Console, console_settings, start_console

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"


@pytest.fixture
def console(
    tmp_path: Path, database_url: str, console_sandbox: SandboxServer, now
) -> Iterator[Console]:
    data = console_settings(database_url, tmp_path, console_sandbox)
    data["web"]["queue_refresh_seconds"] = 2
    with start_console(tmp_path, database_url, sandbox=console_sandbox, data=data) as running:
        yield running


def test_a_new_ticket_appears_in_the_open_queue_without_a_reload(
    console: Console, console_sandbox: SandboxServer, page: Page
) -> None:
    runtime = console.runtime
    jobs.poll(runtime, "sakura-seisakusho")  # the starting state: what the sandbox holds
    with runtime.sessions() as session:
        before = int(session.scalar(select(func.count(Ticket.id))) or 0)
        known = set(session.scalars(select(Ticket.id)))
    password = console.add_user("sato", ["operator"], display_name="佐藤 一郎")
    polled: list[int] = []
    page.on("response", lambda r: polled.append(r.status) if "/desk/rows" in r.url else None)
    sign_in(page, console, "sato", password, path="/desk")
    expect(page.locator("h1")).to_have_text("チケット一覧")
    page.evaluate("window.keptAcrossRefreshes = 'same page'")
    # The page asks again every 2 s; nothing changed, so nothing is swapped.
    with page.expect_response(lambda r: "/desk/rows" in r.url and r.status == 204):
        pass

    world = console_sandbox.world
    device = world.add_devices(SAKURA, 1, detection_test_alert=False)[0]
    world.add_alerts(SAKURA, "hands_on_keyboard", 1, device_id=device, severity="high")
    jobs.poll(runtime, "sakura-seisakusho")
    with runtime.sessions() as session:
        new = [t for t in session.scalars(select(Ticket)) if t.id not in known]
    assert len(new) == 1 and before == len(known)
    ticket = new[0]

    row = page.locator(f"#ticket-{ticket.id}")
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text(ticket.title)
    expect(row).to_contain_text("株式会社")
    assert page.evaluate("window.keptAcrossRefreshes") == "same page"  # no reload
    assert 204 in polled and 200 in polled  # kept while unchanged, swapped when it changed

    row.locator("a").first.click()
    expect(page.locator("#ticket-title")).to_contain_text(ticket.title)
    expect(page.locator("#ticket-alerts")).to_contain_text("プロセスツリー")
    expect(page.locator("#ticket-devices")).to_be_visible()
