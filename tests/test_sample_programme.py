"""The sandbox's sample programme (what `make run` shows), seeded into an empty store only,
with dates relative to the day it runs; and the sandbox's one app secret, good in every
tenant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from edrtrial.config import ProgrammeConfig, load_config
from edrtrial.db import transaction
from edrtrial.models import (
    Application,
    AuditEvent,
    Cohort,
    Company,
    PredecessorRecord,
    PreDiagnosis,
    Tenant,
    Trial,
)
from edrtrial.programme.sample import check_digit, seed_sample_programme
from edrtrial.sandbox import SandboxWorld, sample_tenants
from edrtrial.sandbox.auth import EntraError
from edrtrial.timeutil import jst_date

from sandbox_config import settings, write_config


@pytest.fixture
def programme(tmp_path) -> ProgrammeConfig:
    path = write_config(tmp_path / "config.toml", settings("sqlite:///x.db"), companies=0)
    return load_config(path).settings.programme


@pytest.mark.parametrize(
    "number",
    [
        "7000012050002",  # 国税庁 itself
        "1180301018771",  # トヨタ自動車株式会社
    ],
)
def test_the_check_digit_is_the_national_tax_agencys(number):
    assert check_digit(number[1:]) == int(number[0])


def test_an_empty_store_gets_the_sample_cohort_with_journeys_applications_and_audit(
    now, sessions, programme
):
    with transaction(sessions) as session:
        seeded = seed_sample_programme(session, programme, sample_tenants(4), at=now)
    assert seeded == 4
    today = jst_date(now)
    with sessions() as session:
        [cohort] = session.scalars(select(Cohort)).all()
        companies = {c.key: c for c in session.scalars(select(Company))}
        trials = {t.company_id: t for t in session.scalars(select(Trial))}
        applications = {a.company_id: a for a in session.scalars(select(Application))}
        diagnosed = set(session.scalars(select(PreDiagnosis.company_id)))
        tenants = session.scalars(select(Tenant)).all()
        actors = set(session.scalars(select(AuditEvent.actor)))
        steps = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == "company:midori-shoji")
        ).all()
    assert (cohort.name, cohort.course, cohort.capacity) == ("サンプル第1期", "edr", 50)
    states = {k: (c.state, trials[c.id].decision) for k, c in companies.items()}
    assert states == {
        "sakura-seisakusho": ("in_trial", "undecided"),
        "midori-shoji": ("offboarding", "undecided"),
        "aozora-design": ("in_trial", "continue"),
        "sample-0004": ("in_trial", "undecided"),
    }
    sakura = trials[companies["sakura-seisakusho"].id]
    assert (sakura.starts_on, sakura.ends_on) == (
        today - timedelta(days=70),
        today - timedelta(days=70) + timedelta(days=91),
    )
    assert (today - trials[companies["midori-shoji"].id].ends_on).days >= 10
    aozora = companies["aozora-design"]
    assert (aozora.language, aozora.auto_isolation, aozora.contact_name) == (
        "en",
        True,
        "Emily Clark",
    )
    assert companies["sakura-seisakusho"].contact_email == "it@sakura.example.jp"
    numbers = [c.corporate_number or "" for c in companies.values()]
    assert len(set(numbers)) == 4
    assert all(len(n) == 13 and check_digit(n[1:]) == int(n[0]) for n in numbers)
    for company in companies.values():
        assert company.address.startswith("東京都") and company.prefecture == "東京都"
        assert company.cohort_id == cohort.id and company.place_since is not None
        application = applications[company.id]
        assert application.eligibility == "eligible"
        assert len(application.attestations) == 7
        assert application.raw["法人番号"] == company.corporate_number
        assert application.call_done_at is not None
        assert company.id in diagnosed
    assert all(t.consented_at and t.verified_at and t.connection == {} for t in tenants)
    assert actors == {"sandbox"}
    assert steps[-3:] == ["company.start", "company.near_end", "company.offboard"]

    with transaction(sessions) as session:  # never seeds a store holding any company
        assert seed_sample_programme(session, programme, sample_tenants(3), at=now) == 0


def test_a_store_holding_a_company_is_not_seeded(now, sessions, programme):
    with transaction(sessions) as session:
        session.add(Company(key="tokyo-kogyo", name="東京工業株式会社", contact_email="a@b.jp"))
    with transaction(sessions) as session:
        assert seed_sample_programme(session, programme, sample_tenants(3), at=now) == 0
    with sessions() as session:
        assert session.scalars(select(Company.key)).all() == ["tokyo-kogyo"]
        assert session.scalars(select(Cohort.id)).all() == []


def _token(world: SandboxWorld, tenant: str, secret: str) -> dict[str, object]:
    form = {
        "grant_type": "client_credentials",
        "client_id": world.client_id,
        "client_secret": secret,
        "scope": "https://graph.microsoft.com/.default",
    }
    return world.issue_token(tenant, form)


def test_the_sandbox_app_has_one_secret_for_every_tenant_and_each_tenants_own_stays_good(now):
    world = SandboxWorld(seed=3, tenants=3)
    one, two, _ = (t.tenant_id for t in world.tenants)
    world.set_app_secret("app-secret")
    world.set_client_secrets({one: "one-secret", two: "two-secret"})
    assert _token(world, one, "app-secret")["access_token"]
    assert _token(world, two, "app-secret")["access_token"]
    assert _token(world, one, "one-secret")["access_token"]
    with pytest.raises(EntraError):
        _token(world, one, "two-secret")  # a tenant's own secret is good in that tenant only
    with pytest.raises(EntraError):
        _token(world, two, "wrong")


def test_a_store_holding_a_cohort_or_a_predecessor_list_is_not_seeded(now, sessions, programme):
    """A secretariat that set up its first cohort (or imported the predecessors' list) before
    any application has a programme in the store: no sample company joins it."""
    with transaction(sessions) as session:
        session.add(Cohort(key="c2027", name="第1期", course="edr", capacity=50))
    with transaction(sessions) as session:
        assert seed_sample_programme(session, programme, sample_tenants(3), at=now) == 0
    with sessions() as session:
        assert session.scalars(select(Cohort.key)).all() == ["c2027"]
        assert session.scalars(select(Company.id)).all() == []

    with transaction(sessions) as session:
        session.delete(session.scalars(select(Cohort)).one())
        session.add(PredecessorRecord(name="旧事業の会社", fingerprint="f" * 64))
    with transaction(sessions) as session:
        assert seed_sample_programme(session, programme, sample_tenants(3), at=now) == 0
    with sessions() as session:
        assert session.scalars(select(Company.id)).all() == []
