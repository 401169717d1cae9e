"""Whether an applicant may take part, and why: the programme's rules over its answers.

Pure: it reads the application's facts, the config's `programme.eligibility` and the course
applied for, and what the caller found in the store (a predecessor programme's list, an
earlier application of the same business). Every reason has a code, the Japanese a company
or the secretariat reads (the call for applications' own wording), and English.

The verdict: `not_eligible` when any rule excludes the applicant; else `needs_review` when
the rules cannot decide alone (an industry outside the table, a 法人番号 whose check digit
fails, a business that applied before); else `eligible`. Every problem is listed, the
excluding ones first, so one look shows everything to put right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from edrtrial.config import CourseConfig, EligibilityConfig, IndustryRow
from edrtrial.programme.identity import nfkc

#: The attestations' letters in the call for applications (ア〜キ), in the config's order.
LETTERS = "アイウエオカキクケコサシスセソ"


class Verdict(StrEnum):
    """The rules' answer; the company's journey takes the same name."""

    ELIGIBLE = "eligible"
    NEEDS_REVIEW = "needs_review"
    NOT_ELIGIBLE = "not_eligible"


@dataclass(frozen=True)
class Reason:
    """One rule's finding: what it decides (`effect`), its code, Japanese and English."""

    effect: Verdict
    code: str
    ja: str
    en: str

    def as_dict(self) -> dict[str, str]:
        """As the store keeps it on the application."""
        return {"code": self.code, "ja": self.ja, "en": self.en}


@dataclass(frozen=True)
class Judgement:
    """The verdict and every reason for it."""

    verdict: Verdict
    reasons: tuple[Reason, ...]

    def stored(self) -> list[dict[str, str]]:
        """The reasons as the application keeps them."""
        return [r.as_dict() for r in self.reasons]


@dataclass(frozen=True)
class Facts:
    """What the rules read of an application (normalised by `programme/intake.py`)."""

    kind: str  # "corporation" | "sole_proprietor"
    prefecture: str  # "" when the address names none
    industry: str
    capital_yen: int | None
    employees: int | None
    attestations: frozenset[str]
    existing_edr: bool
    existing_edr_name: str
    prior_support: bool
    tokyo_subsidy: bool
    planned_seats: int
    course: str
    corporate_number: str | None = None
    corporate_number_valid: bool | None = None  # None: it has none (a sole proprietor)


@dataclass(frozen=True)
class Found:
    """What the caller found in the store about the applicant."""

    # A predecessor programme's list names it: "中小企業サイバーセキュリティ向上支援事業（2023）".
    predecessor: str | None = None
    # It applied before: e.g. "c-2050002 (application #3)".
    repeat_of: str | None = None


def yen_ja(amount: int) -> str:
    """Yen as the call for applications writes it: 3億円, 5,000万円, 3億5,000万円."""
    oku, rest = divmod(amount, 10**8)
    man, yen = divmod(rest, 10**4)
    if yen:
        return f"{amount:,}円"
    parts = ([f"{oku:,}億"] if oku else []) + ([f"{man:,}万"] if man else [])
    return ("".join(parts) or "0") + "円"


def industry_row(industry: str, rules: EligibilityConfig) -> IndustryRow | None:
    """The SME table's row naming the industry (compared in NFKC), or None."""
    wanted = nfkc(industry)
    for row in rules.industries:
        if wanted in (nfkc(name) for name in row.names):
            return row
    return None


def judge(
    facts: Facts, rules: EligibilityConfig, course: CourseConfig | None, found: Found = Found()
) -> Judgement:
    """The verdict on an application, with every reason."""
    reasons = [
        *_where(facts, rules),
        *_size(facts, rules),
        *_before(facts, found),
        *_attested(facts, rules),
        *_course(facts, course),
        *_identity(facts, found),
    ]
    problems = [r for r in reasons if r.effect is not Verdict.ELIGIBLE]
    if any(r.effect is Verdict.NOT_ELIGIBLE for r in problems):
        verdict = Verdict.NOT_ELIGIBLE
    elif problems:
        verdict = Verdict.NEEDS_REVIEW
    else:
        return Judgement(Verdict.ELIGIBLE, tuple(reasons))
    problems.sort(key=lambda r: r.effect is not Verdict.NOT_ELIGIBLE)
    return Judgement(verdict, tuple(problems))


def _where(facts: Facts, rules: EligibilityConfig) -> list[Reason]:
    if facts.prefecture == rules.prefecture:
        return []
    if not facts.prefecture:
        return [
            Reason(
                Verdict.NEEDS_REVIEW,
                "prefecture_unknown",
                f"所在地から都道府県を読み取れません。{rules.prefecture}内に主たる事業所があるか"
                "確認してください",
                f"the address names no prefecture; check that the main office is in "
                f"{rules.prefecture}",
            )
        ]
    return [
        Reason(
            Verdict.NOT_ELIGIBLE,
            "outside_prefecture",
            f"{rules.prefecture}内に主たる事業所を有していません（所在地: {facts.prefecture}）",
            f"the main office is not in {rules.prefecture} (address in {facts.prefecture})",
        )
    ]


def _size(facts: Facts, rules: EligibilityConfig) -> list[Reason]:
    """SME under the SME Basic Act art. 2(1): capital **or** employees within the row."""
    if facts.kind == "sole_proprietor" and not rules.sole_proprietors:
        return [
            Reason(
                Verdict.NOT_ELIGIBLE,
                "sole_proprietor",
                "個人事業主は本事業の対象ではありません",
                "sole proprietors are not eligible in this programme",
            )
        ]
    row = industry_row(facts.industry, rules)
    if row is None:
        return [
            Reason(
                Verdict.NEEDS_REVIEW,
                "industry_unknown",
                f"業種「{facts.industry}」が中小企業者の業種表にありません。どの業種に当たるか"
                "確認してください",
                f"the industry {facts.industry!r} is not in the SME table; decide which row "
                "it belongs to",
            )
        ]
    limits_ja = (
        f"{row.label_ja}: 資本金{yen_ja(row.max_capital_yen)}以下又は"
        f"従業員{row.max_employees}人以下"
    )
    limits_en = (
        f"{row.label_en}: capital up to ¥{row.max_capital_yen:,} or up to "
        f"{row.max_employees} employees"
    )
    # A sole proprietor has no capital (a "0円" on the form is not one): its employees alone
    # decide.
    sole = facts.kind == "sole_proprietor"
    capital = None if sole else facts.capital_yen
    capital_ok = capital is not None and capital <= row.max_capital_yen
    employees_ok = facts.employees is not None and facts.employees <= row.max_employees
    if capital_ok or employees_ok:
        return [
            Reason(
                Verdict.ELIGIBLE,
                "sme",
                f"中小企業者に該当します（{limits_ja}）",
                f"an SME ({limits_en})",
            )
        ]
    if facts.employees is None or (capital is None and not sole):
        given_ja, given_en = (
            ("従業員数", "employees") if sole else ("資本金又は従業員数", "capital or employees")
        )
        return [
            Reason(
                Verdict.NEEDS_REVIEW,
                "size_unknown",
                f"{given_ja}の記載がなく、中小企業者に該当するか判断できません（{limits_ja}）",
                f"{given_en} not given: cannot tell whether it is an SME ({limits_en})",
            )
        ]
    size_ja = f"従業員{facts.employees}人"
    size_en = f"{facts.employees} employees"
    if capital is not None:
        size_ja = f"資本金{yen_ja(capital)}、{size_ja}"
        size_en = f"capital ¥{capital:,}, {size_en}"
    return [
        Reason(
            Verdict.NOT_ELIGIBLE,
            "not_sme",
            f"中小企業者に該当しません（{size_ja}。{limits_ja}）",
            f"not an SME ({size_en}; {limits_en})",
        )
    ]


def _before(facts: Facts, found: Found) -> list[Reason]:
    """Not supported before by a predecessor programme; no equivalent Tokyo subsidy."""
    reasons = []
    if facts.prior_support:
        reasons.append(
            Reason(
                Verdict.NOT_ELIGIBLE,
                "prior_support",
                "過去にサイバーセキュリティ支援事業に参加して支援を受けています（申込時の回答）",
                "supported before by a cyber-security support programme (its own answer)",
            )
        )
    if found.predecessor:
        reasons.append(
            Reason(
                Verdict.NOT_ELIGIBLE,
                "predecessor",
                f"過去に{found.predecessor}に参加して支援を受けています（過去の参加企業名簿）",
                f"supported before by {found.predecessor} (the list of earlier participants)",
            )
        )
    if facts.tokyo_subsidy:
        reasons.append(
            Reason(
                Verdict.NOT_ELIGIBLE,
                "tokyo_subsidy",
                "本事業と同等のサイバーセキュリティ対策の内容を支援する東京都の補助事業を活用しています",
                "uses a Tokyo subsidy supporting equivalent cyber-security measures",
            )
        )
    return reasons


def _attested(facts: Facts, rules: EligibilityConfig) -> list[Reason]:
    """Each of the attestations (ア〜キ) not made."""
    return [
        Reason(
            Verdict.NOT_ELIGIBLE,
            f"attestation_{attestation.key}",
            f"宣誓{LETTERS[i]}がありません: {attestation.ja}",
            f"attestation {LETTERS[i]} not made: {attestation.en}",
        )
        for i, attestation in enumerate(rules.attestations)
        if attestation.key not in facts.attestations
    ]


def _course(facts: Facts, course: CourseConfig | None) -> list[Reason]:
    """The course's own rules: an existing EDR refused, planned seats within its cap."""
    if course is None:
        return [
            Reason(
                Verdict.NEEDS_REVIEW,
                "course_unknown",
                f"希望コース「{facts.course}」は本事業にありません",
                f"the course {facts.course!r} is not one of the programme's",
            )
        ]
    reasons = []
    if facts.existing_edr and course.refuses_existing_edr:
        product = f"（{facts.existing_edr_name}）" if facts.existing_edr_name else ""
        reasons.append(
            Reason(
                Verdict.NOT_ELIGIBLE,
                "existing_edr",
                f"既にEDR製品導入済みの方は{course.label_ja}にご参加いただけません{product}",
                f"already runs an EDR product{f' ({facts.existing_edr_name})' if product else ''}: "
                f"not eligible for the {course.label_en}",
            )
        )
    if facts.planned_seats > course.seat_cap:
        unit_ja, unit_en = {"users": ("ユーザー", "users"), "devices": ("台", "devices")}[
            course.seat_unit
        ]
        reasons.append(
            Reason(
                Verdict.NOT_ELIGIBLE,
                "over_seat_cap",
                f"予定利用者数{facts.planned_seats}が上限（1社あたり{course.seat_cap}{unit_ja}）を"
                "超えています",
                f"{facts.planned_seats} planned seats exceed the cap of {course.seat_cap} "
                f"{unit_en} per company",
            )
        )
    return reasons


def _identity(facts: Facts, found: Found) -> Sequence[Reason]:
    reasons = []
    if facts.corporate_number_valid is False:
        reasons.append(
            Reason(
                Verdict.NEEDS_REVIEW,
                "corporate_number_check",
                f"法人番号{facts.corporate_number}の検査用数字が一致しません（入力誤りの可能性）",
                f"the 法人番号 {facts.corporate_number}'s check digit does not match "
                "(perhaps a typo)",
            )
        )
    if found.repeat_of:
        reasons.append(repeat_reason(found.repeat_of))
    return reasons


def repeat_reason(first: str) -> Reason:
    """The business applied before: `first` names its company and first application."""
    return Reason(
        Verdict.NEEDS_REVIEW,
        "repeat",
        f"同じ事業者の申込が既にあります（{first}）",
        f"the same business applied before ({first})",
    )
