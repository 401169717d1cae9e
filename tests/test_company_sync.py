"""The config sync: what it changes in a company's decision, consent and contact is audited."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select

from edrtrial.config import CompanyConfig
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, Company
from edrtrial.programme.companies import sync_companies

from sandbox_config import companies

NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
SOURCE = "/srv/edrtrial/config.toml"


def sample(**changes: Any) -> list[CompanyConfig]:
    """The sample sakura-seisakusho, with `changes` (a `trial` dict is merged)."""
    [data] = companies(date(2026, 11, 25), 1, base_url="https://127.0.0.1:8443", state_dir="s")
    trial = data["trial"] | changes.pop("trial", {})
    return [CompanyConfig.model_validate(data | changes | {"trial": trial})]


def sync(sessions, configs: list[CompanyConfig]) -> list[AuditEvent]:
    """Sync, and return the audit events this sync wrote."""
    with transaction(sessions) as session:
        before = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
        sync_companies(session, configs, source=SOURCE, at=NOW)
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.id > (before or 0)).order_by(AuditEvent.id)
            )
        )


def test_an_unchanged_config_is_synced_without_audit_noise(sessions):
    sync(sessions, sample())
    assert sync(sessions, sample()) == []


def test_a_decision_and_a_consent_changed_in_the_config_are_audited_old_to_new(sessions):
    sync(sessions, sample())
    events = sync(sessions, sample(auto_isolation=True, trial={"decision": "continue"}))
    assert {e.action: (e.actor, e.target, e.detail) for e in events} == {
        "company.auto_isolation_changed": (
            "config-sync",
            "company:sakura-seisakusho",
            {"from": False, "to": True, "source": SOURCE},
        ),
        "trial.decision_changed": (
            "config-sync",
            "company:sakura-seisakusho",
            {"from": "undecided", "to": "continue", "source": SOURCE},
        ),
    }
    with sessions() as session:
        company = session.scalars(select(Company)).one()
        assert all(e.tenant_id == company.tenant.id for e in events)  # type: ignore[union-attr]


def test_a_contact_change_is_audited_without_the_old_or_new_address_or_name(sessions):
    sync(sessions, sample())
    events = sync(
        sessions,
        sample(contact_email="new-it@sakura.example.jp", contact_name="鈴木 一郎", language="en"),
    )
    [event] = events
    assert event.action == "company.contact_changed" and event.actor == "config-sync"
    assert event.detail == {
        "changed": ["email", "name", "language"],
        "language": {"from": "ja", "to": "en"},
        "source": SOURCE,
    }
    written = str(event.detail)
    for personal in ("sakura.example.jp", "山田", "鈴木"):
        assert personal not in written


def test_a_new_companys_consent_decision_and_contact_are_audited_as_set_from_nothing(sessions):
    events = sync(sessions, sample(auto_isolation=True, trial={"decision": "continue"}))
    assert {e.action: (e.actor, e.target, e.detail) for e in events} == {
        "company.auto_isolation_changed": (
            "config-sync",
            "company:sakura-seisakusho",
            {"from": None, "to": True, "source": SOURCE},
        ),
        "company.contact_changed": (
            "config-sync",
            "company:sakura-seisakusho",
            {
                "changed": ["email", "name", "language"],
                "language": {"from": None, "to": "ja"},
                "source": SOURCE,
            },
        ),
        "trial.decision_changed": (
            "config-sync",
            "company:sakura-seisakusho",
            {"from": None, "to": "continue", "source": SOURCE},
        ),
    }
    written = str([e.detail for e in events])
    for personal in ("sakura.example.jp", "山田"):
        assert personal not in written
    with sessions() as session:
        company = session.scalars(select(Company)).one()
        assert all(e.tenant_id == company.tenant.id for e in events)  # type: ignore[union-attr]
