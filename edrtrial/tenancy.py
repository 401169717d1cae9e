"""Tenant isolation: one company's records never reach another company's mail or report.

Every notice and report is built for one ticket's tenant; these guards refuse anything of
another tenant before a word is rendered. They sit with the platform because notices
(notify) and reports both build views from the store's rows, and neither may skip them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import inspect

from edrtrial.errors import TenantMismatchError
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket


def same_tenant(ticket: Ticket, alerts: Sequence[Alert]) -> list[Alert]:
    """The ticket's alerts oldest first, refusing any of another tenant.

    A notice goes to one company: an alert of another tenant here is a bug, not a detail.
    """
    strangers = [a.id for a in alerts if a.tenant_id != ticket.tenant_id]
    if strangers:
        raise TenantMismatchError(
            f"alerts {strangers} do not belong to ticket {ticket.id}'s tenant"
        )
    return sorted(alerts, key=lambda a: (a.created_at is None, a.created_at, a.id))


def check_company(company: Company, ticket: Ticket) -> None:
    """Refuse a company whose loaded tenant is not the ticket's (a mail to the wrong SME)."""
    state = inspect(company, raiseerr=False)
    if state is None or "tenant" in state.unloaded:
        return  # not loaded: never trigger a lazy load (the object may be detached)
    tenant = company.tenant
    if tenant is not None and tenant.id is not None and tenant.id != ticket.tenant_id:
        raise TenantMismatchError(f"company {company.key} is not ticket {ticket.id}'s tenant")


def check_action(ticket: Ticket, action: ResponseAction, device: Device) -> None:
    """Refuse an action or device of another tenant or ticket: it must never reach this mail."""
    problems = []
    if action.tenant_id != ticket.tenant_id:
        problems.append(f"action {action.id} belongs to tenant {action.tenant_id}")
    if device.tenant_id != ticket.tenant_id:
        problems.append(f"device {device.id} belongs to tenant {device.tenant_id}")
    if action.ticket_id is not None and action.ticket_id != ticket.id:
        problems.append(f"action {action.id} belongs to ticket {action.ticket_id}")
    if device.id is not None and action.device_id is not None and action.device_id != device.id:
        problems.append(f"action {action.id} is for device {action.device_id}, not {device.id}")
    if problems:
        raise TenantMismatchError(
            f"do not belong to ticket {ticket.id}'s tenant: {'; '.join(problems)}"
        )
