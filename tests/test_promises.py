"""Promises match the clock: a company is promised the desk its tickets get.

During its trial a company has the incident desk around the clock and its urgent tickets
run on the wall clock; once the trial has ended its tickets wait for business hours, so
no mail may still promise "24時間・休日も対応". Tickets, mails and the desk's notices are
made through the service's own triage, desk and report code on a real store; the clock is
the test's (clock.NOW, a Wednesday 10:00 in Tokyo).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import DeskConfig
from edrtrial.db import transaction
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.triage import triage_pending
from edrtrial.models import Alert, Company, OutboxMessage, Tenant, Trial
from edrtrial.playbooks.engine import default_playbook_paths, load_playbooks

from clock import NOW, day
from conftest import add_tenant

PLAYBOOK = load_playbooks(default_playbook_paths())
DESK = DeskConfig(
    name="EDR体験 サポートデスク",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-0000-0001",
)
POLICY = DeskPolicy(DESK)
ROUND_THE_CLOCK = ("24時間", "休日も対応", "24 hours", "holidays included")
# The sample programme's two stories (tests/sandbox_config.py): mid-trial, and ended 10 days ago.
IN_TRIAL = (day(-60), day(30))
ENDED = (day(-101), day(-10))


def company_with_trial(
    sessions: sessionmaker[Session],
    trial: tuple[date, date],
    *,
    language: str = "ja",
    decision: str = "undecided",
) -> int:
    """A company (contact language `language`) with its tenant and trial; the tenant id."""
    tenant_id = add_tenant(sessions, "acme", "株式会社アクメ")
    with transaction(sessions) as session:
        company = session.get_one(Company, session.get_one(Tenant, tenant_id).company_id)
        company.contact_name = "山田 太郎"
        company.language = language
        starts, ends = trial
        session.add(Trial(company_id=company.id, starts_on=starts, ends_on=ends, decision=decision))
    return tenant_id


def credential_theft(sessions: sessionmaker[Session], tenant_id: int, at: datetime) -> None:
    """A high-severity credential theft on PC-KEIRI-01: P1, the company told, isolation proposed."""
    with transaction(sessions) as session:
        session.add(
            Alert(
                tenant_id=tenant_id,
                source="defender",
                source_id="da-1",
                incident_source_id="inc-1",
                title="Credential theft",
                severity="high",
                status="new",
                category="CredentialAccess",
                device_source_ids=["machine-guid-0001"],
                device_names=["PC-KEIRI-01"],
                created_at=at,
                last_update_at=at,
            )
        )


def triage(sessions: sessionmaker[Session], tenant_id: int, at: datetime) -> None:
    with transaction(sessions) as session:
        triage_pending(session, tenant_id, "acme", PLAYBOOK, POLICY, at)


def body_of(sessions: sessionmaker[Session], kind: str) -> str:
    with sessions() as session:
        message = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).one()
        return message.body_text


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_company_whose_trial_ended_is_not_promised_the_round_the_clock_desk(sessions, language):
    tenant_id = company_with_trial(sessions, ENDED, language=language)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)

    text = body_of(sessions, "company-notice")
    for promise in ROUND_THE_CLOCK:
        assert promise not in text, promise
    assert "平日 9:00〜17:00" in text


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_company_in_its_trial_is_promised_the_round_the_clock_desk(sessions, language):
    tenant_id = company_with_trial(sessions, IN_TRIAL, language=language)
    credential_theft(sessions, tenant_id, NOW - timedelta(minutes=5))
    triage(sessions, tenant_id, NOW)

    text = body_of(sessions, "company-notice")
    promise = (
        "インシデント対応窓口（24時間・休日も対応）：03-0000-0001"
        if language == "ja"
        else "Incident desk (24 hours, holidays included): 03-0000-0001"
    )
    assert promise in text
