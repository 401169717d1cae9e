"""A company's connection through the console, with the sandbox serving Microsoft's APIs:
the consent link and its mail shown to send, the consent recorded from the tenant id the
company gave, and a verification that fails said on the page and audited as the person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from edrtrial.models import AuditEvent
from edrtrial.states import JourneyState

from sandbox_config import sample_world, serving
from web_programme_data import HOSTILE_KEY, add_other_cohort, company
from web_support import Console, start_console

UNKNOWN_TENANT = "3f0c9a4e-1b2d-4c5e-8f70-9a1b2c3d4e5f"


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with serving(sample_world(), tmp_path / "sandbox") as server:
        with start_console(tmp_path, database_url, sandbox=server) as running:
            add_other_cohort(running)
            yield running


def actors(console: Console, action: str) -> list[str]:
    with console.runtime.sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent.actor).where(
                    AuditEvent.action == action, AuditEvent.target == f"company:{HOSTILE_KEY}"
                )
            )
        )


def test_consent_and_a_failed_verification_through_the_console(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    key = HOSTILE_KEY
    web.post(f"/companies/{key}/call", {"notes": "", "cohort": "sample-1"})
    web.post(f"/companies/{key}/prediagnose", {"edr_users": "3", "edr_installed": "no"})
    assert company(console, key).state == JourneyState.ADMITTED

    issued = web.post(f"/companies/{key}/consent-url")
    assert issued.status_code == 200
    assert "/v2.0/adminconsent?" in issued.text and "グローバル管理者" in issued.text
    assert "<script>alert(1)" not in issued.text  # the company's name, in the mail, is text
    assert actors(console, "company.consent_url") == ["web:suzuki"]

    both = web.post(f"/companies/{key}/consented", {"reply": "x", "tenant_id": "y"})
    assert both.status_code == 303
    assert "どちらか一方" in web.get(f"/companies/{key}").text
    web.post(f"/companies/{key}/consented", {"tenant_id": UNKNOWN_TENANT})
    assert company(console, key).state == JourneyState.CONSENTED
    assert actors(console, "company.consent") == ["web:suzuki"]
    page = web.get(f"/companies/{key}").text
    assert UNKNOWN_TENANT in page and 'data-step="verify"' in page

    # The sandbox knows no such tenant: nothing is verified, and the page says so.
    answer = web.post(f"/companies/{key}/verify")
    assert answer.status_code == 303
    page = web.get(f"/companies/{key}").text
    assert 'class="flash error"' in page
    assert company(console, key).state == JourneyState.CONSENTED
    assert actors(console, "company.verify_failed") == ["web:suzuki"]
