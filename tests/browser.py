"""Debian's chromium, headless, driven by Playwright for Python (its own browsers are never
downloaded): the console's pages as a person sees them.

When the browser cannot start, the test fails and says how to install it: a browser test
never skips. `make test` installs Debian's chromium when it is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

from web_support import Console

CHROMIUM = "/usr/bin/chromium"
# As root, without a sandbox; no connection anywhere but the console (the machine's network
# refuses the rest, and Chromium would keep trying).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, for the whole run."""
    path = shutil.which("chromium") or CHROMIUM
    if not Path(path).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make test` does)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        except Error as err:
            pytest.fail(f"Debian's chromium at {path} did not start: {err}")
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab (no cookies) that fails the test on a Content-Security-Policy
    violation or a script error the page reports."""
    context = browser.new_context(locale="ja-JP", viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield tab
    context.close()
    assert problems == [], problems


def sign_in(page: Page, console: Console, username: str, password: str, path: str = "/") -> None:
    """Sign in through the form, as a person does, and land on `path`."""
    page.goto(f"{console.base_url}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button.primary")
    page.wait_for_load_state("domcontentloaded")
