"""The trial calendar as the secretariat reads it: dates, days left, decision, uninstall.

The view model is filled in by `programme/trial_calendar.py`; here it is only worded, for
the terminal (English, like the rest of the CLI) and for the CSV the secretariat opens in
Excel (Japanese headings, the secretariat's words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from edrtrial.reports.csvout import excel_csv
from edrtrial.states import JourneyState


@dataclass(frozen=True, slots=True)
class Offboarding:
    """A company's uninstall tasks by step (a cancelled task counts nowhere)."""

    planned: int = 0
    sent: int = 0
    done: int = 0
    manual: int = 0
    trouble: int = 0
    """The EDR failed the task, or the device still reports after it: someone must look."""

    @property
    def total(self) -> int:
        """Every device to uninstall."""
        return self.planned + self.sent + self.done + self.manual + self.trouble


@dataclass(frozen=True, slots=True)
class TrialEntry:
    """One company's trial as the calendar shows it."""

    company_key: str
    company_name: str
    cohort_key: str
    cohort_name: str
    starts_on: date
    ends_on: date
    days_left: int
    """Days from today to the last day (0: it ends today; negative: ended that many days ago)."""
    journey: JourneyState
    decision: str
    offboarding: Offboarding

    @property
    def ended(self) -> bool:
        """The last day has passed."""
        return self.days_left < 0


DECISION_JA = {"continue": "継続", "offboard": "継続しない", "undecided": "未定"}
"""The company's answer at the trial's end, in the secretariat's words."""


def days_left_text(days: int) -> str:
    """ "12 days left", "ends today", "ended 3 days ago"."""
    if days > 0:
        return f"{days} day{'s' if days != 1 else ''} left"
    if days == 0:
        return "ends today"
    return f"ended {-days} day{'s' if days != -1 else ''} ago"


def days_left_ja(days: int) -> str:
    """ "残り12日", "本日終了", "終了から3日"."""
    if days > 0:
        return f"残り{days}日"
    if days == 0:
        return "本日終了"
    return f"終了から{-days}日"


def progress_text(o: Offboarding) -> str:
    """ "3/5 done, 1 sent, 1 manual" or "" when there is nothing to uninstall."""
    if not o.total:
        return ""
    parts = [f"{o.done}/{o.total} done"]
    for count, word in (
        (o.sent, "sent"),
        (o.planned, "planned"),
        (o.manual, "manual"),
        (o.trouble, "to check"),
    ):
        if count:
            parts.append(f"{count} {word}")
    return ", ".join(parts)


CALENDAR_HEADINGS = (
    "企業キー",
    "企業名",
    "コホート",
    "体験開始日",
    "体験終了日",
    "残り日数",
    "残り期間",
    "状況",
    "継続の意向",
    "アンインストール対象台数",
    "アンインストール予定",
    "アンインストール送信済",
    "アンインストール完了",
    "手動アンインストール",
    "要確認",
)
"""The calendar CSV's columns; "残り日数" is negative once the trial has ended."""


def calendar_csv(entries: Sequence[TrialEntry]) -> bytes:
    """The calendar as a CSV for Excel (UTF-8 with BOM), one row per company."""
    return excel_csv(
        CALENDAR_HEADINGS,
        (
            (
                e.company_key,
                e.company_name,
                e.cohort_name or e.cohort_key,
                e.starts_on,
                e.ends_on,
                e.days_left,
                days_left_ja(e.days_left),
                e.journey.ja,
                DECISION_JA.get(e.decision, e.decision),
                e.offboarding.total,
                e.offboarding.planned,
                e.offboarding.sent,
                e.offboarding.done,
                e.offboarding.manual,
                e.offboarding.trouble,
            )
            for e in entries
        ),
    )
