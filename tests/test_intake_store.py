"""Applications into the store: a journey begun and judged per company, repeats noted and
never a second journey, the same file twice changing nothing, the call's due day on the
desk's calendar, the predecessor list, and the secretariat's review."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

import pytest
from intake_rows import GOOD, SOLE, csv_bytes, row
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import CalendarConfig, ProgrammeConfig
from edrtrial.db import transaction
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.errors import JourneyError
from edrtrial.models import Application, AuditEvent, Company, PredecessorRecord
from edrtrial.programme import applicants, predecessors
from edrtrial.programme.applicants import Recorded
from edrtrial.programme.eligibility import Verdict
from edrtrial.programme.intake import read_applications

PROGRAMME = ProgrammeConfig()
CALENDAR = BusinessCalendar.from_config(CalendarConfig())


def due_on(day: date) -> date:
    return CALENDAR.business_days_after(day, PROGRAMME.call_business_days)


def load(
    sessions: sessionmaker[Session],
    rows: Sequence[Mapping[str, str]],
    at: datetime,
    encoding: str = "cp932",
) -> list[Recorded]:
    read = read_applications(csv_bytes(rows, encoding), PROGRAMME, source="a.csv")
    return applicants.import_rows(
        sessions, read.rows, PROGRAMME, at=at, actor="cli:tester", source="a.csv", due_on=due_on
    )


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Company, Application, AuditEvent)
        )


def company(sessions: sessionmaker[Session], key: str) -> Company:
    with sessions() as session:
        found = session.scalar(select(Company).where(Company.key == key))
        assert found is not None
        session.expunge(found)
        return found


def applications_of(sessions: sessionmaker[Session], key: str) -> list[Application]:
    with sessions() as session:
        found = session.scalars(
            select(Application).join(Company).where(Company.key == key).order_by(Application.id)
        ).all()
        session.expunge_all()
        return list(found)


def test_each_company_begins_its_journey_judged_by_the_rules(sessions, now) -> None:
    done = load(
        sessions,
        [GOOD, SOLE, row(法人番号="9120001077777", 所在地="大阪府大阪市北区梅田1-1-1")],
        now,
    )
    assert [(r.company_key, r.status, r.verdict) for r in done] == [
        ("c-1012345", "imported", "eligible"),
        ("sp-0001", "imported", "eligible"),
        ("c-1077777", "imported", "not_eligible"),
    ]
    sakura = company(sessions, "c-1012345")
    assert (sakura.state, sakura.name, sakura.kind) == (
        "eligible",
        "株式会社さくら製作所",
        "corporation",
    )
    assert (sakura.capital_yen, sakura.employees, sakura.prefecture) == (30_000_000, 45, "東京都")
    assert company(sessions, "sp-0001").kind == "sole_proprietor"
    osaka = company(sessions, "c-1077777")
    assert osaka.state == "not_eligible"
    assert "東京都内に主たる事業所を有していません" in osaka.state_reason
    [application] = applications_of(sessions, "c-1077777")
    assert application.eligibility == "not_eligible"
    assert [r["code"] for r in application.eligibility_reasons] == ["outside_prefecture"]
    assert application.raw["所在地"] == "大阪府大阪市北区梅田1-1-1"
    assert application.source == "a.csv line 4"
    with sessions() as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.target == "company:c-1012345")
            .order_by(AuditEvent.id)
        ).all()
        assert [(e.action, e.actor) for e in events] == [
            ("application.received", "cli:tester"),
            ("company.judge_eligible", "intake"),
        ]
        assert events[1].detail["from"] == "applied"


def test_importing_the_same_file_twice_changes_nothing(sessions, now) -> None:
    rows = [GOOD, SOLE, row(法人番号="1011101054321", 業種="情報通信業")]
    load(sessions, rows, now)
    before = counts(sessions)
    again = load(sessions, rows, now, encoding="utf-8-sig")  # re-saved as CSV UTF-8
    assert [r.status for r in again] == ["already", "already", "already"]
    assert [r.company_key for r in again] == ["c-1012345", "sp-0001", "c-1054321"]
    assert counts(sessions) == before


def test_a_second_application_is_a_repeat_and_starts_no_second_journey(sessions, now) -> None:
    load(sessions, [GOOD], now)
    later = row(受付日時="2026/11/24 09:00", 会社名="（株）さくら製作所", 予定利用者数="50")
    [repeat] = load(sessions, [later], now)
    assert (repeat.status, repeat.company_key) == ("repeat", "c-1012345")
    first, second = applications_of(sessions, "c-1012345")
    assert repeat.repeat_of == f"c-1012345 application #{first.id}"
    assert second.repeat_of == first.id
    assert second.eligibility == "needs_review"
    assert second.eligibility_reasons[0]["code"] == "repeat"
    assert f"申込#{first.id}" in second.eligibility_reasons[0]["ja"]
    assert company(sessions, "c-1012345").state == "eligible"  # the first journey stands
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Company)) == 1


def test_a_sole_proprietor_applying_again_however_written_is_a_repeat(sessions, now) -> None:
    load(sessions, [SOLE], now)
    retyped = SOLE | {
        "受付日時": "2026/11/21 12:00",
        "所在地": "〒150-0001 東京都渋谷区神宮前３－１－１",
        "代表者名": "EMILY CLARK",
    }
    [repeat] = load(sessions, [retyped], now)
    assert (repeat.status, repeat.company_key) == ("repeat", "sp-0001")


def test_the_same_business_under_another_number_needs_review_pointing_to_the_first(
    sessions, now
) -> None:
    load(sessions, [GOOD], now)
    [second] = load(sessions, [row(法人番号="3010001098765")], now)
    assert (second.status, second.verdict) == ("imported", "needs_review")
    assert company(sessions, second.company_key).state == "needs_review"
    assert [r["code"] for r in second.reasons] == ["repeat"]
    assert "c-1012345" in second.reasons[0]["ja"]


def test_a_mistyped_check_digit_is_imported_for_review(sessions, now) -> None:
    [done] = load(sessions, [row(法人番号="6010801012345")], now)
    assert done.verdict == "needs_review"
    assert [r["code"] for r in done.reasons] == ["corporate_number_check"]


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026/11/25 10:00", date(2026, 11, 30)),  # Wednesday: Thu, Fri, then Monday
        ("2026/11/27 16:00", date(2026, 12, 2)),  # Friday: over the weekend
        ("2026/11/20 10:00", date(2026, 11, 26)),  # Friday; Monday the 23rd is 勤労感謝の日
        ("2026/11/21 23:30", date(2026, 11, 26)),  # a Saturday counts from Tuesday
        ("2026/12/25 10:00", date(2027, 1, 5)),  # year-end closure 29 Dec to 3 Jan
        ("2026/11/19 23:30", date(2026, 11, 25)),  # 14:30 UTC is already the 19th in Tokyo
    ],
)
def test_the_call_is_due_three_business_days_after_the_tokyo_receipt_day(
    sessions, now, received: str, due: date
) -> None:
    [done] = load(sessions, [row(受付日時=received)], now)
    [application] = applications_of(sessions, done.company_key)
    assert application.call_due_on == due


def test_keys_are_short_unique_and_ascii(sessions, now) -> None:
    # Both numbers end in 1012345: the second key takes two more digits.
    other = row(法人番号="2020801012345", 会社名="株式会社べつの会社", 代表者名="別野 太郎")
    another_sole = SOLE | {"会社名": "みどり工房", "代表者名": "緑 一", "担当者メール": "m@x.jp"}
    done = load(sessions, [GOOD, other, SOLE, another_sole], now)
    assert [r.company_key for r in done] == ["c-1012345", "c-801012345", "sp-0001", "sp-0002"]


def test_a_company_on_the_predecessor_list_is_not_eligible(sessions, now) -> None:
    listing = (
        "法人番号,名称,事業名,年度,所在地,代表者名\r\n"
        "5010801012345,株式会社さくら製作所,中小企業サイバーセキュリティ向上支援事業,2023年度,,\r\n"
        ",青空デザイン事務所,中小企業サイバーセキュリティ対策強化緊急サポート事業,2024年度,"
        "東京都渋谷区神宮前３－１－１,Emily Clark\r\n"
        "12345,壊れた行,事業,2022年度,,\r\n"
        ",住所のない個人,事業,2022年度,,\r\n"
    ).encode("cp932")
    entries, bad = predecessors.read_predecessors(listing, source="past.csv")
    assert [(b.line, b.reason) for b in bad] == [
        (4, "法人番号: 法人番号 has 5 digits, not 13"),
        (5, "法人番号 empty: give 所在地 and 代表者名 to identify the business"),
    ]
    with transaction(sessions) as session:
        assert predecessors.store_predecessors(session, entries, source="past.csv") == (2, 0)
    with transaction(sessions) as session:  # the same list again adds nothing
        assert predecessors.store_predecessors(session, entries, source="past.csv") == (0, 2)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PredecessorRecord)) == 2
    sakura, sole = load(sessions, [GOOD, SOLE], now)
    assert sakura.verdict == sole.verdict == "not_eligible"
    assert [r["code"] for r in sakura.reasons] == ["predecessor"]
    assert "中小企業サイバーセキュリティ向上支援事業（2023年度）" in sakura.reasons[0]["ja"]
    assert "緊急サポート事業（2024年度）" in sole.reasons[0]["ja"]


def test_the_secretariat_decides_a_review_with_its_reason(sessions, now) -> None:
    [done] = load(sessions, [row(業種="情報通信業")], now)
    assert done.verdict == "needs_review"
    with transaction(sessions) as session:
        found = session.scalar(select(Company).where(Company.key == done.company_key))
        assert found is not None
        applicants.review(
            session,
            found,
            Verdict.ELIGIBLE,
            reason="情報通信業はその他の業種",
            actor="cli:sato",
            at=now,
        )
    assert company(sessions, done.company_key).state == "eligible"
    [application] = applications_of(sessions, done.company_key)
    assert application.eligibility == "eligible"
    assert application.eligibility_reasons[-1] == {
        "code": "review",
        "ja": "事務局の確認: 情報通信業はその他の業種",
        "en": "reviewed: 情報通信業はその他の業種",
    }
    with sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.judge_eligible")
        ).one()
        assert (event.actor, event.detail["from"], event.detail["why"]) == (
            "cli:sato",
            "needs_review",
            "情報通信業はその他の業種",
        )
    with transaction(sessions) as session, pytest.raises(JourneyError, match="eligible"):
        found = session.scalar(select(Company).where(Company.key == done.company_key))
        assert found is not None
        applicants.review(session, found, Verdict.ELIGIBLE, reason="again", actor="x", at=now)


def test_a_crash_never_leaves_half_an_application(sessions, now) -> None:
    read = read_applications(csv_bytes([GOOD, SOLE]), PROGRAMME, source="a.csv")
    calls = []

    def crashing(day: date) -> date:
        calls.append(day)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return due_on(day)

    with pytest.raises(RuntimeError):
        applicants.import_rows(
            sessions, read.rows, PROGRAMME, at=now, actor="cli:t", source="a.csv", due_on=crashing
        )
    with sessions() as session:
        assert session.scalars(select(Company.key)).all() == ["c-1012345"]
        assert session.scalar(select(func.count()).select_from(Application)) == 1
    # Run again: the first is already there, the second is imported whole.
    done = applicants.import_rows(
        sessions, read.rows, PROGRAMME, at=now, actor="cli:t", source="a.csv", due_on=due_on
    )
    assert [r.status for r in done] == ["already", "imported"]


def test_a_company_stored_by_another_import_meanwhile_makes_the_row_a_repeat(
    sessions, now, monkeypatch
) -> None:
    load(sessions, [GOOD], now)
    looked = []
    real = applicants._same_business

    def missed_once(session: Session, row: object) -> Company | None:
        # The first look happens before the other import committed: it finds nothing.
        looked.append(row)
        return None if len(looked) == 1 else real(session, row)  # type: ignore[arg-type]

    monkeypatch.setattr(applicants, "_same_business", missed_once)
    [done] = load(sessions, [row(受付日時="2026/11/24 09:00")], now)
    assert (done.status, done.company_key) == ("repeat", "c-1012345")
    assert len(looked) == 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Company)) == 1


def test_a_damaged_row_with_a_nul_never_stops_the_good_rows(sessions, now) -> None:
    text = "\r\n".join(
        csv_bytes([GOOD, row(会社名="さく\x00ら", 法人番号="7000012050002"), SOLE], "utf-8")
        .decode("utf-8")
        .split("\r\n")
    )
    read = read_applications(text.encode("utf-8"), PROGRAMME, source="a.csv")
    assert [b.line for b in read.bad] == [3]
    done = applicants.import_rows(
        sessions, read.rows, PROGRAMME, at=now, actor="cli:tester", source="a.csv", due_on=due_on
    )
    assert [r.status for r in done] == ["imported", "imported"]
    listing = "法人番号,名称\r\n7000012050002,国税\x00庁\r\n5010801012345,さくら\r\n".encode()
    entries, bad = predecessors.read_predecessors(listing, source="past.csv")
    assert [(b.line, b.reason) for b in bad] == [
        (2, "名称: a NUL character (the file is damaged here)")
    ]
    with transaction(sessions) as session:
        assert predecessors.store_predecessors(session, entries, source="past.csv") == (1, 0)
