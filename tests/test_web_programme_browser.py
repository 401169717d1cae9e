"""The secretariat's pages in Debian's chromium: a company whose name is hostile markup is
shown as its text (no script runs, no element is made of it), and the call is recorded from
the company's page as a person does it, the page then saying where the company stands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from edrtrial.states import JourneyState

from browser import sign_in
from web_programme_data import HOSTILE, HOSTILE_KEY, add_other_cohort, company
from web_support import Console, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        add_other_cohort(running)
        yield running


def test_a_hostile_name_is_text_and_the_call_is_recorded_from_the_page(
    console: Console, page: Page
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    password = console.add_user("suzuki", ["secretariat"], display_name="鈴木")
    sign_in(page, console, "suzuki", password, path="/programme")
    row = page.locator(f'tr[data-company="{HOSTILE_KEY}"]')
    expect(row.locator("a bdi")).to_have_text(HOSTILE)
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    row.locator("a").click()
    expect(page.locator("h1 bdi")).to_have_text(HOSTILE)
    form = page.locator('form[data-step="call"]')
    form.locator("input[name=notes]").fill("規約を説明し、同意を得た")
    form.locator("select[name=cohort]").select_option("sample-1")
    form.locator("button").click()
    expect(page.locator("p.flash.ok")).to_contain_text("電話確認を記録しました")
    expect(page.locator("p.journey-state")).to_contain_text("申込完了(電話確認済)")
    expect(page.locator('form[data-step="prediagnose"]')).to_be_visible()
    assert company(console, HOSTILE_KEY).state == JourneyState.CALL_CONFIRMED
    assert dialogs == []
