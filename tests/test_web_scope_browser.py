"""A person limited to one cohort, in Debian's chromium: every page reachable from the
console's navigation (followed link by link, a few levels deep) and every file those pages
offer (the CSV downloads, the archived reports) says nothing of the other cohort's company,
nor of an applicant in no cohort."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from click.testing import CliRunner
from playwright.sync_api import Page

import clock
from browser import sign_in
from web_programme_data import HOSTILE_KEY, OTHER_KEY, OTHER_NAME, add_other_cohort
from web_support import Console, start_console

FORBIDDEN = (OTHER_NAME, OTHER_KEY, "KIRISHIMA-PC01", "t-kirishima", HOSTILE_KEY)
DEPTH = 3
MOST = 80


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        add_other_cohort(running)
        from edrtrial.cli.main import main

        first, last = clock.TODAY - timedelta(days=10), clock.TODAY - timedelta(days=4)
        for company in (OTHER_KEY, "sakura-seisakusho"):
            result = CliRunner().invoke(
                main,
                ["--config", str(running.config.path), "report", "--company", company,
                 "--from", str(first), "--to", str(last)],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
        yield running


def links(page: Page, base: str) -> list[str]:
    """The same-site links of the page (no fragment), in the order they appear."""
    found = []
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
        url = urljoin(page.url, href).split("#")[0]
        if urlsplit(url).netloc == urlsplit(base).netloc and not urlsplit(url).path.startswith(
            "/static/"
        ):
            found.append(url)
    return found


def test_a_person_of_one_cohort_never_sees_the_other_s_company(
    console: Console, page: Page
) -> None:
    password = console.add_user(
        "kato", ["secretariat", "operator"], cohorts=["sample-1"], display_name="加藤"
    )
    sign_in(page, console, "kato", password)
    seen: dict[str, int] = {}
    queue = [(console.base_url + "/", 0)]
    files = 0
    while queue and len(seen) < MOST:
        url, depth = queue.pop(0)
        if url in seen:
            continue
        answer = page.request.get(url)
        seen[url] = answer.status
        body = answer.body().decode("utf-8-sig", errors="replace")
        for word in FORBIDDEN:
            assert word not in body, f"{word!r} on {url}"
        if "text/html" not in answer.headers.get("content-type", ""):
            files += 1
            continue
        page.goto(url)
        shown = page.content()
        for word in FORBIDDEN:
            assert word not in shown, f"{word!r} on {url}"
        if depth < DEPTH:
            queue.extend((link, depth + 1) for link in links(page, console.base_url))
    paths = {urlsplit(url).path for url in seen}
    assert {"/programme", "/cohorts", "/cohorts/sample-1", "/reports"} <= paths
    assert "/companies/sakura-seisakusho" in paths
    assert {"/reports/seats.csv", "/reports/trial-calendar.csv"} <= paths
    assert "/cohorts/sample-1/results.csv" in paths
    assert any(path.endswith("/file") for path in paths), "an archived report was fetched"
    assert files >= 4
    assert all(status < 500 for status in seen.values()), seen
