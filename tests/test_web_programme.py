"""The secretariat's applications and each company's journey in the console: the list by
journey state with its filters and calls due, the journey page's parts and the steps it
offers, each step taken as the CLI takes it and audited as the person, a refusal said."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from edrtrial.models import AuditEvent, Company, Trial
from edrtrial.states import JourneyState

from web_programme_data import (
    HOSTILE,
    HOSTILE_KEY,
    OTHER_KEY,
    OTHER_NAME,
    add_other_cohort,
    company,
)
from web_support import Console, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        add_other_cohort(running)
        yield running


def test_the_applications_list_by_state_with_counts_and_filters(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    page = web.get("/programme")
    assert page.status_code == 200
    assert "体験中" in page.text and "sakura-seisakusho" in page.text
    assert OTHER_NAME in page.text and 'data-state="eligible"' in page.text
    in_trial = web.get("/programme?state=in_trial").text
    assert 'data-company="sakura-seisakusho"' in in_trial
    assert f'data-company="{HOSTILE_KEY}"' not in in_trial
    sample = web.get("/programme?cohort=sample-1").text
    assert 'data-company="sakura-seisakusho"' in sample and OTHER_NAME not in sample
    assert web.get("/programme?cohort=nowhere").status_code == 404


def test_a_hostile_company_name_stays_text(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    for path in ("/programme", f"/companies/{HOSTILE_KEY}"):
        html = web.get(path).text
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE not in web.get("/programme").text


def test_the_journey_page_shows_each_part(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    html = web.get("/companies/sakura-seisakusho").text
    for part in ("application", "prediagnosis", "cohort", "tenant", "trial", "devices", "history"):
        assert f'id="{part}"' in html, part
    assert "サンプル第1期" in html and "体験中" in html
    due = html.split('id="due"')[1].split("</section>")[0]
    assert "継続の意向(継続・継続しない)" in due and "リマインドメール" in due
    assert '<dd class="decision">未定</dd>' in html
    assert 'data-step="decide"' in html and 'data-step="call"' not in html
    assert web.get("/companies/no-such-company").status_code == 404


def test_a_viewer_is_offered_no_step_and_a_post_is_refused(console: Console) -> None:
    password = console.add_user("mori", ["viewer"])
    web = console.signed_in("mori", password)
    assert "data-step" not in web.get(f"/companies/{HOSTILE_KEY}").text
    refused = web.post(f"/companies/{HOSTILE_KEY}/call", {"notes": "x"})
    assert refused.status_code == 403
    assert company(console, HOSTILE_KEY).state == JourneyState.ELIGIBLE


def audited(console: Console, action: str, key: str) -> list[AuditEvent]:
    with console.runtime.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == action, AuditEvent.target == f"company:{key}"
                )
            )
        )


def test_from_the_call_to_admission_through_the_console(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    key = HOSTILE_KEY
    assert 'data-step="call"' in web.get(f"/companies/{key}").text
    called = web.post(f"/companies/{key}/call", {"notes": "規約を説明", "cohort": "sample-1"})
    assert called.status_code == 303 and called.headers["location"] == f"/companies/{key}"
    page = web.get(f"/companies/{key}").text
    assert "申込完了(電話確認済)" in page and 'class="flash ok"' in page
    assert company(console, key).state == JourneyState.CALL_CONFIRMED
    [call] = audited(console, "company.call", key)
    assert call.actor == "web:suzuki"
    web.post(
        f"/companies/{key}/prediagnose",
        {"edr_users": "5", "edr_installed": "no", "policy": "none", "antivirus": "Defender"},
    )
    assert company(console, key).state == JourneyState.ADMITTED
    [diagnosed] = audited(console, "company.diagnose", key)
    assert diagnosed.actor == "web:suzuki"
    page = web.get(f"/companies/{key}").text
    assert "参加確定" in page and 'data-step="consent-url"' in page
    # The history says each step in the secretariat's words, not the audit log's names.
    history = page.split('id="history"')[1].split("</section>")[0]
    assert "電話確認を記録しました" in history and "事前診断を記録しました" in history
    assert "申込完了(電話確認済) → " in history and "company.call" not in history


def test_every_journey_step_has_its_word_in_the_history() -> None:
    from edrtrial.programme.journey import JOURNEY
    from edrtrial.web.programme import HISTORY_WORDS

    missing = [step for step in JOURNEY.steps if f"company.{step}" not in HISTORY_WORDS]
    assert missing == []


def test_a_refused_step_is_a_message_not_an_error(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    # sakura-seisakusho is in its trial: a call is not a step it can take.
    answer = web.post("/companies/sakura-seisakusho/call", {"notes": ""})
    assert answer.status_code == 303
    page = web.get("/companies/sakura-seisakusho").text
    assert 'class="flash error"' in page and "実行できませんでした" in page
    assert company(console, "sakura-seisakusho").state == JourneyState.IN_TRIAL
    # A missing reason is said too.
    web.post(f"/companies/{HOSTILE_KEY}/refuse", {"reason": ""})
    assert "理由" in web.get(f"/companies/{HOSTILE_KEY}").text


def test_a_decision_and_a_refusal_through_the_console(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    web.post("/companies/sakura-seisakusho/decide", {"decision": "continue", "reason": "電話で"})
    with console.runtime.sessions() as session:
        trial = session.scalar(
            select(Trial).join(Company).where(Company.key == "sakura-seisakusho")
        )
        assert trial is not None and trial.decision == "continue"
        assert trial.decided_by == "web:suzuki"
        [decided] = session.scalars(select(AuditEvent).where(AuditEvent.action == "trial.decided"))
        assert decided.actor == "web:suzuki"
    page = web.get("/companies/sakura-seisakusho").text
    assert "継続の意向を記録しました" in page
    web.post(f"/companies/{HOSTILE_KEY}/refuse", {"reason": "要件を満たさない"})
    assert company(console, HOSTILE_KEY).state == JourneyState.REFUSED
    [refused] = audited(console, "company.refuse", HOSTILE_KEY)
    assert refused.actor == "web:suzuki"


def test_a_person_limited_to_a_cohort_sees_only_its_companies(console: Console) -> None:
    password = console.add_user("kato", ["secretariat"], cohorts=["sample-1"])
    web = console.signed_in("kato", password)
    page = web.get("/programme").text
    assert "sakura-seisakusho" in page
    assert OTHER_NAME not in page and OTHER_KEY not in page and HOSTILE_KEY not in page
    # The counts are of its own cohort's three companies only (the sample programme's).
    assert "すべて (3)" in page and "3 社" in page
    assert 'data-state="eligible"' not in page  # the applicants are not even counted
    for path in (
        f"/companies/{OTHER_KEY}",
        f"/companies/{HOSTILE_KEY}",
        "/programme?cohort=other-2",
    ):
        assert web.get(path).status_code == 404, path
    refused = web.post(f"/companies/{OTHER_KEY}/decide", {"decision": "offboard"})
    assert refused.status_code == 404
    assert company(console, OTHER_KEY).state == JourneyState.IN_TRIAL


def test_the_secretariat_s_pages_read_in_english_on_request(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    assert web.post("/language", {"lang": "en", "next": "/programme"}).status_code == 303
    expected = {
        "/programme": "Overdue calls only",
        "/companies/sakura-seisakusho": "(continue or offboard)",
        "/cohorts": "Tenants in trouble",
        "/cohorts/sample-1": "Seats against the cap",
        "/reports": "No report archived yet.",
    }
    for path, words in expected.items():
        page = web.get(path)
        assert page.status_code == 200 and words in page.text, path
        assert "体験中" not in page.text or path == "/programme", path


def test_a_review_and_a_withdrawal_through_the_console(console: Console) -> None:
    from edrtrial.db import transaction

    from admission_rows import add_eligible

    with transaction(console.runtime.sessions) as session:
        add_eligible(session, "doubtful", state="needs_review")
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    assert 'data-step="review"' in web.get("/companies/doubtful").text
    web.post("/companies/doubtful/review", {"decision": "eligible", "reason": "資本金を確認"})
    assert company(console, "doubtful").state == JourneyState.ELIGIBLE
    [reviewed] = audited(console, "company.judge_eligible", "doubtful")
    assert reviewed.actor == "web:suzuki"
    web.post("/companies/doubtful/withdraw", {"reason": "社内事情"})
    assert company(console, "doubtful").state == JourneyState.WITHDRAWN
    [withdrew] = audited(console, "company.withdraw", "doubtful")
    assert withdrew.actor == "web:suzuki"
