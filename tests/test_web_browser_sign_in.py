"""Signing in to the console in Debian's chromium: the form, the landing page, the language
switch, and no script or style the page's Content-Security-Policy refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser import sign_in
from web_support import Console, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        yield running


def test_sign_in_in_the_browser_and_read_it_in_english(console: Console, page: Page) -> None:
    password = console.add_user("tanaka", ["viewer"], display_name="田中 花子")
    page.goto(console.base_url + "/")
    expect(page.locator("h1")).to_have_text("サインイン")
    page.fill("input[name=username]", "tanaka")
    page.fill("input[name=password]", "wrong password")
    page.click("button.primary")
    expect(page.locator("p.flash.error")).to_contain_text("正しくない")
    sign_in(page, console, "tanaka", password)
    expect(page.locator("header .person")).to_contain_text("田中 花子")
    page.click("button[name=lang][value=en]")
    expect(page.locator("header nav")).to_contain_text("Desk")
    page.click("text=Sign out")
    expect(page.locator("h1")).to_have_text("Sign in")
