"""Who a company calls, and what it is promised, in the words every company mail uses.

The promise itself is decided by `edrtrial.coverage` (the 24-hour incident desk inside the
trial, business hours otherwise); here it becomes words, once per language, so the alert
notice, the isolation notice, an operator's message and both reports cannot disagree.
The programme's wording: 「インシデント対応窓口（24時間・休日も対応）」 during the trial; the
support desk's hours from the config (e.g. 平日 9:00〜17:00) outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.config import DeskConfig
from edrtrial.coverage import Clock, Coverage

_WORDS: dict[str, dict[str, str]] = {
    "ja": {
        "incident_desk_24h": "インシデント対応窓口（24時間・休日も対応）",
        "incident_desk_hours": "インシデント対応窓口（{hours}）",
        "no_hours": "平日の日中",
        "after_hours": "受付時間外（夜間・休日）に届いた検知は、次の受付時間に確認します。",
        "after_trial": "無料体験期間が終了したため、受付時間外（夜間・休日）に届いた検知は、"
        "次の受付時間に確認します。",
    },
    "en": {
        "incident_desk_24h": "Incident desk (24 hours, holidays included)",
        "incident_desk_hours": "Incident desk ({hours})",
        "no_hours": "weekdays, daytime",
        "after_hours": "A detection that arrives outside these hours (at night or on a holiday) "
        "is reviewed when the desk next opens.",
        "after_trial": "As your free trial has ended, a detection that arrives outside these "
        "hours (at night or on a holiday) is reviewed when the desk next opens.",
    },
}


@dataclass(frozen=True, slots=True)
class DeskContacts:
    """Who the company calls, and the promise that goes with it (one language)."""

    name: str
    email: str
    phone: str
    hours: str
    open_hours: str  # the desk's hours as promised outside the trial (never empty)
    incident_desk_phone: str
    urgent_phone: str  # the number to call when something is wrong: incident desk, else desk
    around_the_clock: bool  # inside the trial: the incident desk answers 24 hours, holidays too
    isolates: bool  # the desk may still cut a device off remotely (not after the trial)
    incident_desk: str  # the incident desk's name with its hours, as the mails print it
    after_hours: str  # "" around the clock; else what happens to a detection after hours


def desk_contacts(desk: DeskConfig, coverage: Coverage, language: str = "ja") -> DeskContacts:
    """The desk as a company mail names it, promising what `coverage` says holds now."""
    words = _WORDS["en" if language == "en" else "ja"]
    hours = desk.hours.strip() or words["no_hours"]
    around = coverage.promise is Clock.INCIDENT_DESK
    note = "after_trial" if coverage.ended else "after_hours"
    return DeskContacts(
        name=desk.name,
        email=str(desk.email),
        phone=desk.phone,
        hours=desk.hours,
        open_hours=hours,
        incident_desk_phone=desk.incident_desk_phone,
        urgent_phone=desk.incident_desk_phone or desk.phone,
        around_the_clock=around,
        isolates=not coverage.ended,
        incident_desk=(
            words["incident_desk_24h"]
            if around
            else words["incident_desk_hours"].format(hours=hours)
        ),
        after_hours="" if around else words[note],
    )
