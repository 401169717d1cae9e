"""An administrator adds a person in Debian's chromium, reads the generated password on the
page that shows it once, and that person signs in with it; no script or style the page's
Content-Security-Policy refuses."""

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


def test_an_admin_adds_a_person_who_then_signs_in(console: Console, page: Page) -> None:
    password = console.add_user("root", ["admin"], display_name="管理 太郎")
    sign_in(page, console, "root", password, "/admin")
    page.click("header nav >> text=管理")
    page.click("text=ユーザーとロール")
    expect(page.locator("h1")).to_have_text("ユーザーとロール")
    page.fill("input[name=username]", "yamada")
    page.fill("input[name=display_name]", "山田 次郎")
    page.check("input[name=role][value=operator]")
    page.check("input[name=cohort][value=sample-1]")
    page.check("input[name=generate]")
    page.click('form[action="/admin/users"] button.primary')
    expect(page.locator("h1")).to_have_text("新しいパスワード")
    generated = page.locator("pre.password").inner_text().strip()
    assert len(generated) >= 12
    page.click("text=アカウントに戻る")
    expect(page.locator("h1")).to_have_text("yamada")
    expect(page.locator("dl.facts")).to_contain_text("山田 次郎")
    page.click("text=サインアウト")

    sign_in(page, console, "yamada", generated, "/admin/status")
    expect(page.locator("header .person")).to_contain_text("山田 次郎")
    expect(page.locator("header .person")).to_contain_text("sample-1")
    expect(page.locator("h1")).to_have_text("サービスの状態")
