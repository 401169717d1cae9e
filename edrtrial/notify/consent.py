"""The mail asking a company's administrator for admin consent, for the secretariat to send.

`tenants consent-url` prints it beside the link: the secretariat sends it from its own mail
(the company's administrator must trust the sender), so it is rendered, not queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.models import Company
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """What the consent mail says: to whom, the link, who answers questions."""

    company_name: str
    contact_name: str
    url: str
    programme: str
    secretariat: str
    desk_name: str
    desk_email: str
    desk_phone: str
    desk_hours: str
    again: bool  # a link sent again (the tenant's consent must be given anew)


def consent_request_mail(
    company: Company, url: str, programme: ProgrammeConfig, desk: DeskConfig, *, again: bool
) -> RenderedMail:
    """The consent request in the company's language."""
    request = ConsentRequest(
        company_name=company.name,
        contact_name=company.contact_name,
        url=url,
        programme=programme.name,
        secretariat=programme.secretariat,
        desk_name=desk.name,
        desk_email=str(desk.email),
        desk_phone=desk.phone,
        desk_hours=desk.hours,
        again=again,
    )
    if company.language == "en":
        subject = f"{SUBJECT_PREFIX_EN} Please grant admin consent to connect Microsoft Defender"
        return RenderedMail(subject, render("consent_request.en.txt.j2", c=request))
    subject = f"{SUBJECT_PREFIX}Microsoft Defender 接続のための管理者の同意のお願い"
    return RenderedMail(subject, render("consent_request.ja.txt.j2", c=request))
