"""The config sync: what it changes in a company's decision, consent and contact is audited;
a sample's relative trial dates are counted from the day it is seeded, then kept."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edrtrial.config import CompanyConfig, load_config
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.models import AuditEvent, Company, Trial
from edrtrial.programme.companies import sync_companies
from edrtrial.timeutil import jst_date

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


def shipped_companies() -> list[CompanyConfig]:
    example = Path(__file__).parent.parent / "config.example.toml"
    return list(load_config(example).settings.companies)


def trials(sessions) -> dict[str, tuple[date, date, str]]:
    with sessions() as session:
        rows = session.execute(select(Company.key, Trial).join(Trial))
        return {key: (t.starts_on, t.ends_on, t.decision) for key, t in rows}


@pytest.mark.parametrize("seeded", [NOW, NOW + timedelta(days=400)], ids=["now", "next-year"])
def test_the_sample_programme_tells_the_same_story_whatever_day_it_is_seeded(
    new_database_url, seeded
):
    """`make run` on any day: one company mid-trial, one whose trial ended undecided (its
    devices are offboarded), one that continues; and later syncs keep the seeded dates."""
    engine = make_engine(new_database_url())
    upgrade(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        sync_companies(session, shipped_companies(), source=SOURCE, at=seeded)
    today = jst_date(seeded)

    seeded_trials = trials(sessions)
    sakura, midori, aozora = (
        seeded_trials[k] for k in ("sakura-seisakusho", "midori-shoji", "aozora-design")
    )
    assert sakura[0] < today < sakura[1] and sakura[2] == "undecided"
    assert midori[1] < today and midori[2] == "undecided"
    assert aozora[0] < today < aozora[1] and aozora[2] == "continue"

    with transaction(sessions) as session:  # a restart months later changes nothing
        sync_companies(session, shipped_companies(), source=SOURCE, at=seeded + timedelta(days=90))
    assert trials(sessions) == seeded_trials
    with sessions() as session:
        assert not session.scalars(
            select(AuditEvent).where(AuditEvent.action == "trial.dates_changed")
        ).all()
