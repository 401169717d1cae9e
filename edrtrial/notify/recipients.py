"""Queueing a message for its recipient: the desk's channel, or the company's contact.

The rendering is `notify.notices`; this is only where each kind of recipient is addressed,
so a desk message never reaches a company and the other way round.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from edrtrial.config import ChannelConfig
from edrtrial.models import Company, OutboxMessage
from edrtrial.notify import outbox
from edrtrial.reports.render import RenderedMail


def send_to_channel(
    session: Session,
    channel: ChannelConfig,
    tenant_id: int | None,
    mail: RenderedMail,
    *,
    dedupe_key: str,
    kind: str,
) -> None:
    """Queue a desk message on one channel: a mail to its address, or a post to its hook."""
    outbox.enqueue(
        session,
        dedupe_key=dedupe_key,
        kind=kind,
        channel="mail" if channel.kind == "mail" else channel.kind,
        recipient=str(channel.to) if channel.kind == "mail" else channel.name,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        tenant_id=tenant_id,
    )


def mail_company(
    session: Session,
    company: Company,
    tenant_id: int | None,
    mail: RenderedMail,
    *,
    dedupe_key: str,
    kind: str,
    report_id: int | None = None,
) -> OutboxMessage:
    """Queue a mail to the company contact (once per dedupe key); the queued message.

    `tenant_id` is None before the company has a tenant (its application's mails);
    `report_id` names the archived report the mail attaches."""
    return outbox.enqueue(
        session,
        dedupe_key=dedupe_key,
        kind=kind,
        recipient=company.contact_email,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        tenant_id=tenant_id,
        report_id=report_id,
    )
