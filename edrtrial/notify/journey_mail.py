"""What a company is told as its application moves: on the waiting list, a place freed for it,
its participation confirmed, or refused (with the reasons), in its language (ja or en).

Each mail exists once per company and event (its dedupe key), so a step retried after a lost
commit or a second run tells nobody twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.models import Company, OutboxMessage
from edrtrial.notify.recipients import mail_company
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render

EVENTS = ("waiting", "moved_up", "admitted", "refused")

_SUBJECTS = {
    "ja": {
        "waiting": "お申込みが完了しました（キャンセル待ちのご案内）",
        "moved_up": "参加枠に空きが出ました（事前診断のご案内）",
        "admitted": "事業参加が確定しました",
        "refused": "事業へのご参加について",
    },
    "en": {
        "waiting": "Your application is complete: you are on the waiting list",
        "moved_up": "A place is now yours: the pre-diagnosis comes next",
        "admitted": "Your participation is confirmed",
        "refused": "About your participation in the programme",
    },
}


@dataclass(frozen=True, slots=True)
class JourneyNotice:
    """What a journey mail says (one language)."""

    event: str
    programme: str
    secretariat: str
    company_name: str
    contact_name: str
    course: str
    position: int | None
    reasons: tuple[str, ...]
    desk_name: str
    desk_email: str
    desk_phone: str
    desk_hours: str


def journey_mail(
    company: Company,
    event: str,
    programme: ProgrammeConfig,
    desk: DeskConfig,
    *,
    position: int | None = None,
    reasons: Sequence[dict[str, str]] = (),
) -> RenderedMail:
    """The mail telling the company of `event`, in its language."""
    if event not in EVENTS:
        raise ValueError(f"no journey mail for {event!r}")
    language = "en" if company.language == "en" else "ja"
    course = programme.courses.get(company.course)
    notice = JourneyNotice(
        event=event,
        programme=programme.name,
        secretariat=programme.secretariat,
        company_name=company.name,
        contact_name=company.contact_name,
        course=(course.label_en if language == "en" else course.label_ja) if course else "",
        position=position,
        reasons=tuple(r.get(language) or r.get("ja", "") for r in reasons),
        desk_name=desk.name,
        desk_email=str(desk.email),
        desk_phone=desk.phone,
        desk_hours=desk.hours,
    )
    prefix = SUBJECT_PREFIX_EN + " " if language == "en" else SUBJECT_PREFIX
    return RenderedMail(
        prefix + _SUBJECTS[language][event],
        render(f"journey_notice.{language}.txt.j2", n=notice),
    )


def tell(
    session: Session,
    company: Company,
    event: str,
    programme: ProgrammeConfig,
    desk: DeskConfig,
    *,
    position: int | None = None,
    reasons: Sequence[dict[str, str]] = (),
) -> OutboxMessage:
    """Queue the company's mail of `event`, once per company and event."""
    mail = journey_mail(company, event, programme, desk, position=position, reasons=reasons)
    return mail_company(
        session,
        company,
        None,
        mail,
        dedupe_key=f"journey:{company.id}:{event}",
        kind=f"journey.{event}",
    )
