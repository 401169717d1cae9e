"""The secretariat's seat report: each company's seats against its cap, and cohort totals.

The secretariat watches that no company installs past the programme's cap (インストール
台数は1社あたり300台まで) and reports the cohort's figures to Tokyo. The same view serves
the terminal (`edrtrial seats`), the CSV it opens in Excel and the weekly mail that carries
that CSV. The rows come from `programme/seats.py`; nothing here reads the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from edrtrial.reports.csvout import excel_csv
from edrtrial.reports.render import SUBJECT_PREFIX, RenderedMail, render
from edrtrial.reports.trial_calendar import DECISION_JA


class SeatFigures(Protocol):
    """One company's seats (`programme.seats.SeatRow`)."""

    @property
    def company_key(self) -> str: ...
    @property
    def company_name(self) -> str: ...
    @property
    def cohort_key(self) -> str: ...
    @property
    def cohort_name(self) -> str: ...
    @property
    def planned(self) -> int: ...
    @property
    def onboarded(self) -> int: ...
    @property
    def active_7d(self) -> int: ...
    @property
    def offboarded(self) -> int: ...
    @property
    def verified(self) -> int: ...
    @property
    def cap(self) -> int: ...
    @property
    def trial_start(self) -> date | None: ...
    @property
    def trial_end(self) -> date | None: ...
    @property
    def decision(self) -> str: ...
    @property
    def over_cap(self) -> bool: ...
    @property
    def near_cap(self) -> bool: ...


NO_COHORT = "コホートなし"
"""The group of companies holding no cohort place (an applicant, a company moved out)."""


@dataclass(frozen=True, slots=True)
class SeatTotal:
    """The seats of a group of companies: a cohort's, or the whole programme's."""

    cohort_key: str
    name: str
    companies: int
    planned: int
    onboarded: int
    active_7d: int
    offboarded: int
    verified: int
    cap: int
    over: int
    """Companies over their cap."""
    near: int
    """Companies near their cap, not over it."""

    def warning_ja(self) -> str:
        """ "上限超過1社、上限間近2社" or ""."""
        parts = []
        if self.over:
            parts.append(f"上限超過{self.over}社")
        if self.near:
            parts.append(f"上限間近{self.near}社")
        return "、".join(parts)


def _total(cohort_key: str, name: str, rows: Sequence[SeatFigures]) -> SeatTotal:
    return SeatTotal(
        cohort_key,
        name,
        len(rows),
        sum(r.planned for r in rows),
        sum(r.onboarded for r in rows),
        sum(r.active_7d for r in rows),
        sum(r.offboarded for r in rows),
        sum(r.verified for r in rows),
        sum(r.cap for r in rows),
        sum(1 for r in rows if r.over_cap),
        sum(1 for r in rows if r.near_cap),
    )


def cap_state_ja(row: SeatFigures) -> str:
    """The company's cap in one word for the CSV: 上限超過, 上限間近 or ""."""
    return "上限超過" if row.over_cap else "上限間近" if row.near_cap else ""


def cap_warning_ja(row: SeatFigures) -> str:
    """What the secretariat must act on, in its words, or "" when the company is within."""
    if not (row.over_cap or row.near_cap):
        return ""
    share = f"{row.onboarded}台／上限{row.cap}台"
    if row.cap:
        share += f"（{row.onboarded / row.cap:.0%}）"
    if row.over_cap:
        return (
            f"{row.company_name}（{row.company_key}）: インストール台数が上限を超えています {share}"
        )
    return (
        f"{row.company_name}（{row.company_key}）: インストール台数が上限に近づいています {share}"
    )


@dataclass(frozen=True, slots=True)
class SeatReport:
    """Every company's seats on `today`, the totals of each cohort and of all."""

    today: date
    lines: tuple[SeatFigures, ...]
    cohorts: tuple[SeatTotal, ...]
    total: SeatTotal

    @property
    def warnings(self) -> list[str]:
        """One line per company over or near its cap, those over it first."""
        over = [cap_warning_ja(r) for r in self.lines if r.over_cap]
        near = [cap_warning_ja(r) for r in self.lines if r.near_cap]
        return over + near


def build_seat_report(rows: Sequence[SeatFigures], today: date) -> SeatReport:
    """The report of these companies' rows (in their order), totalled per cohort (in the
    order of the cohorts' keys, the companies of none last) and over all."""
    groups: dict[str, list[SeatFigures]] = {}
    names: dict[str, str] = {}
    for r in rows:
        groups.setdefault(r.cohort_key, []).append(r)
        names[r.cohort_key] = r.cohort_name or r.cohort_key or NO_COHORT
    order = sorted(groups, key=lambda k: (k == "", k))
    return SeatReport(
        today,
        tuple(rows),
        tuple(_total(k, names[k], groups[k]) for k in order),
        _total("", "全体", rows),
    )


SEAT_HEADINGS = (
    "企業キー",
    "企業名",
    "コホート",
    "計画台数",
    "インストール台数",
    "7日以内に稼働",
    "アンインストール済",
    "検知テスト確認済",
    "上限台数",
    "上限の状況",
    "体験開始日",
    "体験終了日",
    "残り日数",
    "継続の意向",
)
"""The seat CSV's columns: one row per company, then the total rows (企業キー 合計)."""
TOTAL_KEY = "合計"


def _company_cells(r: SeatFigures, today: date) -> tuple[object, ...]:
    return (
        r.company_key,
        r.company_name,
        r.cohort_name or r.cohort_key,
        r.planned,
        r.onboarded,
        r.active_7d,
        r.offboarded,
        r.verified,
        r.cap,
        cap_state_ja(r),
        r.trial_start,
        r.trial_end,
        (r.trial_end - today).days if r.trial_end else None,
        DECISION_JA.get(r.decision, r.decision),
    )


def _total_cells(t: SeatTotal) -> tuple[object, ...]:
    return (
        TOTAL_KEY,
        f"{t.name}（{t.companies}社）",
        t.cohort_key,
        t.planned,
        t.onboarded,
        t.active_7d,
        t.offboarded,
        t.verified,
        t.cap,
        t.warning_ja(),
        None,
        None,
        None,
        None,
    )


def seat_csv(report: SeatReport) -> bytes:
    """The report as a CSV for Excel: each company, then each cohort's total and the whole
    programme's (a single cohort's total is the programme's, and is written once)."""
    rows = [_company_cells(r, report.today) for r in report.lines]
    if len(report.cohorts) > 1:
        rows += [_total_cells(t) for t in report.cohorts]
    rows.append(_total_cells(report.total))
    return excel_csv(SEAT_HEADINGS, rows)


def seat_csv_filename(report: SeatReport) -> str:
    """The attachment's name: seats_2026-12-07.csv."""
    return f"seats_{report.today.isoformat()}.csv"


def seat_report_mail(
    report: SeatReport, *, programme: str, secretariat: str, period: tuple[date, date]
) -> RenderedMail:
    """The weekly mail to the secretariat: totals and warnings in the body, the CSV attached
    by the caller. Japanese: the secretariat is."""
    start, end = period
    subject = f"{SUBJECT_PREFIX}台数レポート（{start.isoformat()}〜{end.isoformat()}）"
    if report.total.over:
        subject += f" 上限超過{report.total.over}社"
    text = render(
        "seat_report.ja.txt.j2",
        r=report,
        programme=programme,
        secretariat=secretariat,
        start=start,
        end=end,
        filename=seat_csv_filename(report),
        several=len(report.cohorts) > 1,
    )
    return RenderedMail(subject=subject, text=text)
