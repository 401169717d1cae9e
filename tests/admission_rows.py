"""Companies ready for the call, cohorts, and a programme's settings, for admission tests.

The intake (CSV import, the eligibility rules) is tested on its own; these tests start where
a company is `eligible`, its application received and its call due.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import CourseConfig, ProgrammeConfig, Settings
from edrtrial.db import transaction
from edrtrial.models import Application, Cohort, Company

import clock

CYCRAFT = CourseConfig(
    label_ja="EDR導入コース（CyCraft）",
    label_en="EDR course (CyCraft)",
    connector="cycraft",
    seat_unit="devices",
)
AV = CourseConfig(
    label_ja="ウイルス対策コース", label_en="antivirus course", refuses_existing_edr=False
)


def settings(**programme: Any) -> Settings:
    """The service's settings with the programme's courses (the EDR one, CyCraft, antivirus)."""
    courses = {"edr": CourseConfig(label_ja="EDR導入コース", label_en="EDR course")}
    courses |= {"cycraft": CYCRAFT, "av": AV}
    return Settings(
        mail={"from_address": "edr-trial@example.jp", "from_name": "EDR体験 運営事務局"},
        desk={
            "name": "EDR体験 サポートデスク",
            "email": "desk@example.jp",
            "phone": "03-0000-0000",
            "hours": "平日 9:00〜17:00",
        },
        programme=ProgrammeConfig(courses=courses, **programme),
    )


def add_cohort(
    sessions: sessionmaker[Session],
    key: str = "c1",
    capacity: int = 2,
    course: str = "edr",
    closed: bool = False,
    created_at: datetime | None = None,
) -> int:
    """A cohort; its id."""
    with transaction(sessions) as session:
        cohort = Cohort(
            key=key,
            name=f"第{key}期",
            course=course,
            capacity=capacity,
            closed=closed,
            created_at=created_at or clock.NOW,
        )
        session.add(cohort)
        session.flush()
        return cohort.id


def add_eligible(
    session: Session,
    key: str,
    received_at: datetime | None = None,
    *,
    course: str = "edr",
    language: str = "ja",
    state: str = "eligible",
    **company: Any,
) -> Company:
    """An eligible company with its application (received at the test's now by default)."""
    received = received_at or clock.NOW - timedelta(days=1)
    row = Company(
        key=key,
        name=company.pop("name", f"株式会社{key}"),
        contact_email=f"it@{key}.example.jp",
        contact_name="山田 花子",
        language=language,
        course=course,
        state=state,
        state_since=received,
        **company,
    )
    session.add(row)
    session.flush()
    session.add(
        Application(
            company_id=row.id,
            received_at=received,
            source="cli",
            fingerprint=f"fp-{key}",
            raw={"会社名": row.name, "資本金": "1,000万円"},
            course=course,
            eligibility="eligible",
            eligibility_reasons=[],
        )
    )
    session.flush()
    return row


def eligible(sessions: sessionmaker[Session], *keys: str, **kwargs: Any) -> None:
    """Several eligible companies, each received a minute after the one before."""
    with transaction(sessions) as session:
        for i, key in enumerate(keys):
            at = clock.NOW - timedelta(days=1) + timedelta(minutes=i)
            add_eligible(session, key, at, **kwargs)
