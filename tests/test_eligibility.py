"""The eligibility rules: each SME row at and just above its thresholds, capital OR
employees, sole proprietors, Tokyo, the attestations, the course's rules, and what needs a
person's review; every reason in Japanese (the call's wording) and English."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edrtrial.config import CourseConfig, EligibilityConfig, ProgrammeConfig
from edrtrial.programme.eligibility import Facts, Found, Judgement, Verdict, judge, yen_ja

PROGRAMME = ProgrammeConfig()
RULES = PROGRAMME.eligibility
EDR = PROGRAMME.courses["edr"]
ALL = frozenset(a.key for a in RULES.attestations)
NOTHING = Found()

BASE = Facts(
    kind="corporation",
    prefecture="東京都",
    industry="製造業",
    capital_yen=10_000_000,
    employees=10,
    attestations=ALL,
    existing_edr=False,
    existing_edr_name="",
    prior_support=False,
    tokyo_subsidy=False,
    planned_seats=10,
    course="edr",
    corporate_number="7000012050002",
    corporate_number_valid=True,
)


def verdict(
    found: Found = NOTHING,
    rules: EligibilityConfig = RULES,
    course: CourseConfig | None = EDR,
    **changes: object,
) -> Judgement:
    return judge(replace(BASE, **changes), rules, course, found)  # type: ignore[arg-type]


def codes(judgement: Judgement) -> list[str]:
    return [r.code for r in judgement.reasons]


def test_a_tokyo_sme_with_every_attestation_is_eligible_and_says_why() -> None:
    judgement = verdict()
    assert judgement.verdict is Verdict.ELIGIBLE
    [reason] = judgement.reasons
    assert reason.code == "sme"
    assert "中小企業者に該当します" in reason.ja
    assert "資本金3億円以下又は従業員300人以下" in reason.ja


# (industry as the form writes it, capital cap, employees cap): the SME Basic Act art. 2(1).
ROWS = [
    ("製造業", 300_000_000, 300),
    ("建設業", 300_000_000, 300),
    ("運輸業", 300_000_000, 300),
    ("その他", 300_000_000, 300),
    ("卸売業", 100_000_000, 100),
    ("サービス業", 50_000_000, 100),
    ("小売業", 50_000_000, 50),
]


@pytest.mark.parametrize(("industry", "capital", "employees"), ROWS)
def test_capital_at_its_cap_is_within_and_one_yen_above_is_not(
    industry: str, capital: int, employees: int
) -> None:
    over = employees + 1  # employees alone would exclude it
    assert verdict(industry=industry, capital_yen=capital, employees=over).verdict == "eligible"
    above = verdict(industry=industry, capital_yen=capital + 1, employees=over)
    assert above.verdict is Verdict.NOT_ELIGIBLE
    assert codes(above) == ["not_sme"]
    assert f"資本金{yen_ja(capital)}以下又は従業員{employees}人以下" in above.reasons[0].ja


@pytest.mark.parametrize(("industry", "capital", "employees"), ROWS)
def test_employees_at_their_cap_are_within_and_one_more_is_not(
    industry: str, capital: int, employees: int
) -> None:
    big = capital + 1  # capital alone would exclude it
    assert verdict(industry=industry, capital_yen=big, employees=employees).verdict == "eligible"
    above = verdict(industry=industry, capital_yen=big, employees=employees + 1)
    assert above.verdict is Verdict.NOT_ELIGIBLE
    assert codes(above) == ["not_sme"]


def test_capital_or_employees_either_one_within_is_enough() -> None:
    assert verdict(industry="小売業", capital_yen=10**10, employees=5).verdict == "eligible"
    assert verdict(industry="小売業", capital_yen=1, employees=10_000).verdict == "eligible"


def test_a_corporation_without_capital_is_judged_by_its_employees() -> None:
    assert verdict(capital_yen=None, employees=300).verdict is Verdict.ELIGIBLE
    judgement = verdict(capital_yen=None, employees=301)
    assert judgement.verdict is Verdict.NEEDS_REVIEW
    assert codes(judgement) == ["size_unknown"]


def test_neither_capital_nor_employees_given_needs_review() -> None:
    assert codes(verdict(capital_yen=None, employees=None)) == ["size_unknown"]


def test_a_sole_proprietor_is_eligible_by_the_table() -> None:
    judgement = verdict(
        kind="sole_proprietor",
        capital_yen=0,
        employees=3,
        corporate_number=None,
        corporate_number_valid=None,
    )
    assert judgement.verdict is Verdict.ELIGIBLE
    assert verdict(kind="sole_proprietor", capital_yen=None, employees=3).verdict == "eligible"


def test_a_sole_proprietor_has_no_capital_and_is_judged_by_its_employees_alone() -> None:
    sole = {"kind": "sole_proprietor", "corporate_number": None, "corporate_number_valid": None}
    within = verdict(industry="サービス業", capital_yen=0, employees=100, **sole)
    assert within.verdict is Verdict.ELIGIBLE
    above = verdict(industry="サービス業", capital_yen=0, employees=101, **sole)
    assert above.verdict is Verdict.NOT_ELIGIBLE
    assert codes(above) == ["not_sme"]
    assert above.reasons[0].ja.startswith("中小企業者に該当しません（従業員101人。")
    unknown = verdict(industry="サービス業", capital_yen=10_000_000, employees=None, **sole)
    assert codes(unknown) == ["size_unknown"]


def test_sole_proprietors_are_refused_when_the_programme_says_so() -> None:
    rules = RULES.model_copy(update={"sole_proprietors": False})
    judgement = verdict(rules=rules, kind="sole_proprietor", capital_yen=None)
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == ["sole_proprietor"]


def test_a_main_office_outside_tokyo_is_not_eligible() -> None:
    judgement = verdict(prefecture="大阪府")
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == ["outside_prefecture"]
    assert judgement.reasons[0].ja == "東京都内に主たる事業所を有していません（所在地: 大阪府）"


def test_an_address_naming_no_prefecture_needs_review() -> None:
    judgement = verdict(prefecture="")
    assert judgement.verdict is Verdict.NEEDS_REVIEW
    assert codes(judgement) == ["prefecture_unknown"]


def test_an_industry_outside_the_table_needs_review_naming_it() -> None:
    judgement = verdict(industry="情報通信業")
    assert judgement.verdict is Verdict.NEEDS_REVIEW
    assert codes(judgement) == ["industry_unknown"]
    assert "情報通信業" in judgement.reasons[0].ja
    assert "'情報通信業'" in judgement.reasons[0].en


def test_each_missing_attestation_is_named() -> None:
    judgement = verdict(attestations=ALL - {"no_tax_arrears", "not_religious_political"})
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == [
        "attestation_no_tax_arrears",
        "attestation_not_religious_political",
    ]
    assert (
        judgement.reasons[0].ja
        == "宣誓アがありません: 都税、消費税及び地方消費税の額に滞納がないこと"
    )
    assert judgement.reasons[1].ja.startswith("宣誓キがありません: 宗教活動や政治活動")


def test_an_existing_edr_is_refused_by_the_edr_course_only() -> None:
    judgement = verdict(existing_edr=True, existing_edr_name="CrowdStrike Falcon")
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == ["existing_edr"]
    assert "既にEDR製品導入済みの方は" in judgement.reasons[0].ja
    assert "CrowdStrike Falcon" in judgement.reasons[0].ja
    other = EDR.model_copy(update={"refuses_existing_edr": False})
    assert verdict(course=other, existing_edr=True).verdict is Verdict.ELIGIBLE


def test_supported_before_by_its_own_answer_or_by_the_list_is_not_eligible() -> None:
    assert codes(verdict(prior_support=True)) == ["prior_support"]
    listed = verdict(Found(predecessor="中小企業サイバーセキュリティ向上支援事業（2023年度）"))
    assert listed.verdict is Verdict.NOT_ELIGIBLE
    assert codes(listed) == ["predecessor"]
    assert "中小企業サイバーセキュリティ向上支援事業（2023年度）" in listed.reasons[0].ja


def test_an_equivalent_tokyo_subsidy_is_not_eligible() -> None:
    judgement = verdict(tokyo_subsidy=True)
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == ["tokyo_subsidy"]
    assert "東京都の補助事業を活用しています" in judgement.reasons[0].ja


def test_planned_seats_above_the_course_cap_are_refused() -> None:
    assert verdict(planned_seats=300).verdict is Verdict.ELIGIBLE
    judgement = verdict(planned_seats=301)
    assert codes(judgement) == ["over_seat_cap"]
    assert "300ユーザー" in judgement.reasons[0].ja
    devices = EDR.model_copy(update={"seat_unit": "devices", "seat_cap": 100})
    assert "100台" in verdict(course=devices, planned_seats=101).reasons[0].ja


def test_a_failing_check_digit_needs_review_as_a_possible_typo() -> None:
    judgement = verdict(corporate_number="8000012050002", corporate_number_valid=False)
    assert judgement.verdict is Verdict.NEEDS_REVIEW
    assert codes(judgement) == ["corporate_number_check"]
    assert "8000012050002" in judgement.reasons[0].ja


def test_a_repeated_business_needs_review_pointing_to_the_first() -> None:
    judgement = verdict(Found(repeat_of="c-2050002、申込#1"))
    assert judgement.verdict is Verdict.NEEDS_REVIEW
    assert codes(judgement) == ["repeat"]
    assert "c-2050002、申込#1" in judgement.reasons[0].ja


def test_every_problem_is_listed_those_that_exclude_first() -> None:
    judgement = verdict(
        industry="情報通信業", prefecture="大阪府", tokyo_subsidy=True, corporate_number_valid=False
    )
    assert judgement.verdict is Verdict.NOT_ELIGIBLE
    assert codes(judgement) == [
        "outside_prefecture",
        "tokyo_subsidy",
        "industry_unknown",
        "corporate_number_check",
    ]
    assert all(r.ja and r.en for r in judgement.reasons)


def test_thresholds_come_from_the_config() -> None:
    rows = [row.model_copy(update={"max_employees": 20}) for row in RULES.industries]
    rules = RULES.model_copy(update={"industries": rows})
    assert verdict(rules=rules, capital_yen=10**10, employees=20).verdict == "eligible"
    assert verdict(rules=rules, capital_yen=10**10, employees=21).verdict == "not_eligible"


@pytest.mark.parametrize(
    ("amount", "written"),
    [(300_000_000, "3億円"), (50_000_000, "5,000万円"), (350_000_000, "3億5,000万円"), (0, "0円")],
)
def test_yen_are_written_as_the_call_writes_them(amount: int, written: str) -> None:
    assert yen_ja(amount) == written
