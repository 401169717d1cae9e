"""The company's mails about the end of its trial: the reminders, the offboarding, its end.

At T-14 and T-7 (`programme.reminder_days`) the company is asked whether it will continue
with the vendor directly; at the end, without a decision to continue, it is told from which
day the EDR is uninstalled remotely from every device; once every device is verified, it is
told that it is done and how to remove the programme's app from its tenant. Each mail is in
the company's language and exists once (its dedupe key names the company, the trial's end
and the step), so a job run twice, or again after a restart, queues nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.coverage import coverage_at
from edrtrial.models import Company, OutboxMessage, Trial
from edrtrial.notify.recipients import mail_company
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render
from edrtrial.reports.vocabulary import ja_date_weekday

REMINDER_KIND = "trial_reminder"
OFFBOARDING_KIND = "trial_offboarding"
OFFBOARDED_KIND = "trial_offboarded"


@dataclass(frozen=True, slots=True)
class TrialLetter:
    """What every end-of-trial mail prints (one language)."""

    company_name: str
    contact_name: str
    programme: str
    product: str  # the EDR as the course names it
    ends_on: str  # the trial's last day, with its weekday
    offboard_from: str  # the day the uninstall starts
    days_left: int
    devices: int
    manual: int  # devices a person uninstalls by hand (no remote uninstall for them)
    app_id: str  # the programme's app (its Application ID) in the tenant's Enterprise applications
    desk: DeskContacts


def _language(company: Company) -> str:
    return "en" if company.language == "en" else "ja"


def _day(value: date, language: str) -> str:
    """'2027/02/24（水）', or 'Wednesday, 24 February 2027'."""
    if language == "ja":
        return ja_date_weekday(value)
    return f"{value:%A}, {value.day} {value:%B %Y}"


def _product(programme: ProgrammeConfig, company: Company, language: str) -> str:
    course = programme.courses.get(company.course)
    if course is None:
        return "EDR"
    return course.label_en if language == "en" else course.label_ja


def letter(
    company: Company,
    trial: Trial | None,
    *,
    offboard_from: date,
    today: date,
    at: datetime,
    programme: ProgrammeConfig,
    desk: DeskConfig,
    devices: int = 0,
    manual: int = 0,
) -> TrialLetter:
    """The facts of one end-of-trial mail, the desk promised as the trial stands `at`."""
    language = _language(company)
    ends = trial.ends_on if trial is not None else today
    app = str(programme.app.model_dump().get("client_id", "")) if programme.app else ""
    return TrialLetter(
        company_name=company.name,
        contact_name=company.contact_name,
        programme=programme.name,
        product=_product(programme, company, language),
        ends_on=_day(ends, language),
        offboard_from=_day(offboard_from, language),
        days_left=max((ends - today).days, 0),
        devices=devices,
        manual=manual,
        app_id=app,
        desk=desk_contacts(desk, coverage_at(trial, at), language),
    )


_SUBJECTS = {
    REMINDER_KIND: {
        "ja": "{p}無料体験の終了日（{end}）と、終了後のご利用についてのお伺い",
        "en": "{p} Your free trial ends on {end}: will you continue?",
    },
    OFFBOARDING_KIND: {
        "ja": "{p}無料体験の終了に伴い、EDRを各端末から遠隔でアンインストールします",
        "en": "{p} Your trial has ended: the EDR is being removed from your computers",
    },
    OFFBOARDED_KIND: {
        "ja": "{p}EDRのアンインストールが完了しました（最後のお手続きのお願い）",
        "en": "{p} The EDR has been removed from your computers (one last step)",
    },
}


def _mail(kind: str, company: Company, facts: TrialLetter, **extra: object) -> RenderedMail:
    language = _language(company)
    prefix = SUBJECT_PREFIX_EN if language == "en" else SUBJECT_PREFIX
    subject = _SUBJECTS[kind][language].format(p=prefix, end=facts.ends_on)
    return RenderedMail(subject, render(f"{kind}.{language}.txt.j2", n=facts, **extra))


def reminder_mail(company: Company, facts: TrialLetter, days_before: int) -> RenderedMail:
    """The question at T-`days_before`: continue with the vendor, or the uninstall and when."""
    return _mail(REMINDER_KIND, company, facts, days_before=days_before)


def offboarding_mail(company: Company, facts: TrialLetter, withdrawn: bool) -> RenderedMail:
    """What happens now that the trial ended (or the company withdrew) without continuing."""
    return _mail(OFFBOARDING_KIND, company, facts, withdrawn=withdrawn)


def offboarded_mail(company: Company, facts: TrialLetter) -> RenderedMail:
    """Every device is done: and the steps to remove the programme's app from the tenant."""
    return _mail(OFFBOARDED_KIND, company, facts)


def reminder_key(company: Company, ends_on: date, days_before: int) -> str:
    """One reminder per company, trial end and reminder day: an extension asks again."""
    return f"trial:reminder:{company.key}:{ends_on.isoformat()}:{days_before}"


def offboarding_key(company: Company, offboard_from: date) -> str:
    """One offboarding notice per company and start of its uninstall."""
    return f"trial:offboarding:{company.key}:{offboard_from.isoformat()}"


def offboarded_key(company: Company) -> str:
    """One notice that the company is done: a company is offboarded once."""
    return f"trial:offboarded:{company.key}"


def queue(
    session: Session,
    company: Company,
    tenant_id: int,
    mail: RenderedMail,
    *,
    dedupe_key: str,
    kind: str,
) -> OutboxMessage | None:
    """Queue the mail to the company's contact once; None when it has no address."""
    if not company.contact_email.strip():
        return None
    return mail_company(session, company, tenant_id, mail, dedupe_key=dedupe_key, kind=kind)
