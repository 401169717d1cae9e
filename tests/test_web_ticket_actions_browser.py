"""The desk's actions on a ticket page in Debian's chromium: isolating a device after the
page that names it and its company, resolving with the programme's five-part incident
summary, and a secretariat user who is offered no device action at all."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from test_web_ticket_actions import SAKURA, incident

from edrtrial.models import Device, Ticket

from browser import sign_in
from web_support import Console


@pytest.fixture
def console(sandboxed_console: Console) -> Console:
    return sandboxed_console


def device_name(console: Console, source_id: str) -> str:
    with console.runtime.sessions() as session:
        return session.scalars(select(Device.name).where(Device.source_id == source_id)).one()


def state_of(console: Console, ticket_id: int) -> str:
    with console.runtime.sessions() as session:
        return session.get_one(Ticket, ticket_id).state


def test_isolate_a_device_after_the_page_that_names_it(console: Console, page: Page) -> None:
    tid, device = incident(console)
    name = device_name(console, device)
    password = console.add_user("sato", ["operator"])
    sign_in(page, console, "sato", password, path=f"/tickets/{tid}")
    expect(page).to_have_url(f"{console.base_url}/tickets/{tid}")
    page.click("tr[data-device] button[data-action=isolate] >> nth=0")
    expect(page.locator("h1")).to_have_text("端末を隔離しますか？")
    expect(page.locator("dd.device")).to_have_text(name)
    expect(page.locator("dd.company")).to_contain_text(SAKURA.name)
    expect(page.locator("dd.tenant")).to_have_text(SAKURA.tenant_id)
    assert not console.world.is_isolated(SAKURA.tenant_id, device)
    page.click("button[data-action=confirm-isolate]")
    expect(page).to_have_url(f"{console.base_url}/tickets/{tid}")
    expect(page.locator("p.flash.ok")).to_contain_text(f"{name}（{SAKURA.name}）の隔離")
    expect(page.locator("p.flash.ok")).to_contain_text("EDRが実行しました")
    assert console.world.is_isolated(SAKURA.tenant_id, device)
    # Isolated now: the ticket offers its release, not a second isolation.
    expect(page.locator("button[data-action=release]")).to_have_count(1)
    expect(page.locator("button[data-action=isolate]")).to_have_count(0)


def test_resolve_with_the_five_part_incident_summary(console: Console, page: Page) -> None:
    tid, _ = incident(console)
    password = console.add_user("sato", ["operator"])
    sign_in(page, console, "sato", password, path=f"/tickets/{tid}")
    form = page.locator("form[data-action=resolve]")
    expect(form).to_contain_text("発生日時")
    form.locator("textarea[name=when]").fill("2026年12月6日 10:00頃")
    form.locator("textarea[name=what]").fill("遠隔操作による不審なサービスの実行")
    form.locator("textarea[name=cause]").fill("公開されていたリモートデスクトップへの不正ログイン")
    form.locator("textarea[name=handling]").fill("端末をネットワークから隔離し、パスワードを変更")
    # One part missing: the browser keeps the form (the five are required).
    form.locator("button[data-action=resolve]").click()
    assert state_of(console, tid) == "new"
    form.locator("textarea[name=effect]").fill("ほかの端末への拡大は確認されていません")
    form.locator("select[name=classification]").select_option("truePositive")
    expect(form.locator("input[name=report]")).to_be_checked()
    form.locator("button[data-action=resolve]").click()
    expect(page.locator("p.flash.ok")).to_contain_text(f"チケット #{tid} を解決済みにしました。")
    assert state_of(console, tid) == "resolved"
    expect(page.locator("form[data-action=resolve]")).to_have_count(0)
    expect(page.locator("form[data-action=reopen]")).to_have_count(1)


def test_a_secretariat_user_is_offered_no_device_action(console: Console, page: Page) -> None:
    tid, _ = incident(console)
    password = console.add_user("suzuki", ["secretariat"])
    sign_in(page, console, "suzuki", password, path=f"/tickets/{tid}")
    expect(page).to_have_url(f"{console.base_url}/tickets/{tid}")
    expect(page.locator("button[data-action=isolate]")).to_have_count(0)
    expect(page.locator("button[data-action=release]")).to_have_count(0)
    expect(page.locator("section.ticket-actions")).to_have_count(0)
    expect(page.locator("form[data-action=acknowledge]")).to_have_count(0)


def test_release_asks_first_and_a_refusal_is_said_before_any_button(
    console: Console, page: Page
) -> None:
    """The confirmation page alone (reached from the ticket page's form, here by its URL)."""
    tid, device = incident(console)
    name = device_name(console, device)
    with console.runtime.sessions() as session:
        store_id = session.scalars(select(Device.id).where(Device.source_id == device)).one()
    password = console.add_user("sato", ["operator"])
    sign_in(page, console, "sato", password, path=f"/tickets/{tid}/release?device={store_id}")
    expect(page.locator("h1")).to_have_text("端末の隔離を解除しますか？")
    expect(page.locator("p.flash.error")).to_contain_text(f"{name} は隔離されていないため")
    expect(page.locator("button[data-action=confirm-release]")).to_have_count(0)
    page.goto(f"{console.base_url}/tickets/{tid}/isolate?device={store_id}")
    expect(page.locator("dd.device")).to_have_text(name)
    page.click("button[data-action=confirm-isolate]")
    expect(page).to_have_url(f"{console.base_url}/tickets/{tid}")
    expect(page.locator("p.flash.ok")).to_contain_text("EDRが実行しました")
    assert console.world.is_isolated(SAKURA.tenant_id, device)
    page.goto(f"{console.base_url}/tickets/{tid}/release?device={store_id}")
    page.click("button[data-action=confirm-release]")
    expect(page.locator("p.flash.ok")).to_contain_text(f"{name}（{SAKURA.name}）の隔離解除")
    assert not console.world.is_isolated(SAKURA.tenant_id, device)
