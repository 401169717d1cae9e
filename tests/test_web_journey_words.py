"""A step the secretariat's rules refuse is said on the company's page in the reader's
language: Japanese by default, the same English as the CLI's on request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edrtrial.states import JourneyState

from web_programme_data import company
from web_support import Console, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        yield running


def test_a_journey_refusal_reads_in_japanese_and_in_english_on_request(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    # sakura-seisakusho is in its trial: a review decides only before the call.
    review = {"decision": "eligible", "reason": "資本金を確認"}
    answer = web.post("/companies/sakura-seisakusho/review", review)
    assert answer.status_code == 303
    page = web.get(answer.headers["location"]).text
    assert 'class="flash error"' in page
    assert "は in_trial です。審査で決められるのは電話確認の前まで" in page
    assert "a review decides only before" not in page
    assert company(console, "sakura-seisakusho").state == JourneyState.IN_TRIAL

    assert web.post("/language", {"lang": "en", "next": "/programme"}).status_code == 303
    web.post("/companies/sakura-seisakusho/review", review)
    page = web.get("/companies/sakura-seisakusho").text
    assert (
        "is in_trial: a review decides only before the confirmation call "
        "(needs_review, eligible, not_eligible)"
    ) in page
    assert "審査で決められる" not in page
