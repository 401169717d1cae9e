"""One tenant, one company, end to end against the sandbox: a company configured by its
domain polls its own tenant; the same tenant under a second company, or a token of another
tenant, never puts one company's alerts in another's tickets or mails."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.errors import ConfigError
from edrtrial.models import Alert, Company, Device, OutboxMessage, Tenant, Ticket
from edrtrial.programme import tenants
from edrtrial.sandbox import SandboxServer

from conftest import add_tenant
from sandbox_config import (
    sample_companies,
    sample_world,
    serving,
    settings,
    to_toml,
    write_config,
)

SAKURA, MIDORI = (f"5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c0{n}" for n in (1, 2))
MIDORI_CONTACT = "soumu@midori.example.jp"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    with serving(sample_world(11), tmp_path / "sandbox") as server:
        yield server


def configure(
    tmp_path: Path, server: SandboxServer, database_url: str, **connections: dict[str, Any]
) -> Path:
    """The sample programme on this sandbox, with `connections[key]` merged into that
    company's connection block."""
    data = settings(
        database_url,
        base_url=server.base_url,
        state_dir=server.state_dir,
        mail_dir=tmp_path / "mail",
    )
    blocks = sample_companies(data)
    for company in blocks:
        company["connection"] |= connections.get(company["key"], {})
    return write_config(tmp_path / "config.toml", data, companies=blocks)


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def stored(database_url: str) -> Session:
    return make_sessions(make_engine(database_url))()


def alerts_of(session: Session, company_key: str) -> set[str]:
    query = (
        select(Alert.source_id)
        .join(Tenant, Alert.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Company.key == company_key)
    )
    return set(session.scalars(query))


def sandbox_alerts(server: SandboxServer, tenant: str) -> set[str]:
    return set(server.world._tenant(tenant).alerts)


def test_a_company_configured_by_its_domain_polls_its_own_tenant_under_its_guid(
    tmp_path, sandbox, database_url
):
    config = configure(
        tmp_path, sandbox, database_url, **{"sakura-seisakusho": {"tenant_id": "Sakura.Example.JP"}}
    )
    assert cli(config, "db", "upgrade").exit_code == 0
    polled = cli(config, "poll")
    assert polled.exit_code == 0, polled.output

    with stored(database_url) as session:
        tenant = session.scalars(
            select(Tenant).join(Company).where(Company.key == "sakura-seisakusho")
        ).one()
        assert (tenant.external_id, tenant.state) == (SAKURA, "active")
        assert alerts_of(session, "sakura-seisakusho") == sandbox_alerts(sandbox, SAKURA)
    assert SAKURA in cli(config, "tenants").output
    # The next start reads the same config: the domain still names the tenant it bound.
    assert cli(config, "poll").exit_code == 0


@pytest.mark.parametrize("spelling", [SAKURA.upper(), "sakura.example.jp"])
def test_one_tenant_under_two_companies_never_reaches_the_second_companys_tickets_or_mails(
    tmp_path, sandbox, database_url, spelling
):
    """Midori is brought in with Sakura's tenant (the programme's one app works in every
    consented tenant): refused at the import, or at its first poll, naming both."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    sakura, midori_block = sample_companies(data, 2)
    config = write_config(tmp_path / "config.toml", data, companies=[sakura])
    midori_block["connection"]["tenant_id"] = spelling
    second = tmp_path / "midori.toml"
    second.write_text(to_toml({"companies": [midori_block]}), encoding="utf-8")
    imported = cli(config, "companies", "import-config", str(second))
    said = " ".join(imported.output.split())
    if imported.exit_code != 0:  # the same GUID, however spelled: refused before any poll
        assert f"tenant {SAKURA} is held by company 'sakura-seisakusho'" in said
        assert "midori-shoji: refused" in said

    polled = cli(config, "poll")
    if imported.exit_code == 0:  # a domain: resolved at its first poll, and refused then
        assert polled.exit_code != 0
        assert "'sakura-seisakusho'" in str(polled.output) + str(polled.exception)
        assert "'midori-shoji'" in str(polled.output) + str(polled.exception)

    with stored(database_url) as session:
        assert alerts_of(session, "midori-shoji") == set()
        assert alerts_of(session, "sakura-seisakusho") == sandbox_alerts(sandbox, SAKURA)
        midori = session.scalar(select(Tenant).join(Company).where(Company.key == "midori-shoji"))
        assert (midori is None) == (imported.exit_code != 0)
        if midori is not None:  # refused at its first poll: parked, holding nothing
            assert midori.state == "parked"
            assert midori.state_reason == (
                "company 'midori-shoji': tenant_id sakura.example.jp is tenant "
                f"{SAKURA}, which company 'sakura-seisakusho' holds; one tenant belongs to one "
                "company: correct the config"
            )
            assert not session.scalars(select(Device).where(Device.tenant_id == midori.id)).all()
            assert not session.scalars(select(Ticket).where(Ticket.tenant_id == midori.id)).all()
        recipients = set(session.scalars(select(OutboxMessage.recipient)))
    assert MIDORI_CONTACT not in recipients


def test_sandbox_tokens_name_their_tenant_and_can_be_issued_for_another(sandbox):
    trust = ssl.create_default_context(cafile=str(sandbox.ca_path))
    with httpx.Client(base_url=sandbox.base_url, verify=trust, timeout=10) as http:

        def tid() -> str:
            form = {
                "grant_type": "client_credentials",
                "client_id": sandbox.world.client_id,
                "client_secret": sandbox.secret_path(SAKURA).read_text("utf-8").strip(),
                "scope": "https://graph.microsoft.com/.default",
            }
            token = http.post(f"/{SAKURA}/oauth2/v2.0/token", data=form).json()["access_token"]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["aud"] == "https://graph.microsoft.com"
            return str(claims["tid"])

        assert tid() == SAKURA
        answer = http.post(
            "/sandbox/tokens/issued-for", json={"tenant": "sakura-seisakusho", "issued_for": MIDORI}
        )
        assert answer.json() == {"tenant_id": SAKURA, "issued_for": MIDORI}
        assert tid() == MIDORI
        http.post("/sandbox/tokens/issued-for", json={"tenant": SAKURA, "issued_for": None})
        assert tid() == SAKURA


def test_a_token_for_another_tenant_parks_the_company_and_nothing_of_that_tenant_is_stored(
    tmp_path, sandbox, database_url
):
    config = configure(tmp_path, sandbox, database_url)
    assert cli(config, "db", "upgrade").exit_code == 0
    sandbox.world.issue_tokens_for(SAKURA, MIDORI)  # Sakura's sign-in hands out Midori's tokens

    assert cli(config, "poll").exit_code == 1
    with stored(database_url) as session:
        assert alerts_of(session, "sakura-seisakusho") == set()
        assert alerts_of(session, "midori-shoji") == sandbox_alerts(sandbox, MIDORI)
        sakura = session.scalars(
            select(Tenant).join(Company).where(Company.key == "sakura-seisakusho")
        ).one()
        assert sakura.state == "parked"
        assert f"naming tenant {MIDORI}; nothing is read or sent" in sakura.state_reason

    sandbox.world.issue_tokens_for(SAKURA, None)  # the operator fixed the sign-in
    assert cli(config, "tenants", "resume", "sakura-seisakusho").exit_code == 0
    assert cli(config, "poll").exit_code == 0
    with stored(database_url) as session:
        assert alerts_of(session, "sakura-seisakusho") == sandbox_alerts(sandbox, SAKURA)


def test_two_companies_binding_one_tenant_at_once_get_the_clear_refusal(sessions, monkeypatch):
    """Both look for a holder before either has bound it (parallel polls); one wins."""
    sakura = add_tenant(sessions, "sakura-seisakusho")
    midori = add_tenant(sessions, "midori-shoji")
    with transaction(sessions) as session:  # both configured by a domain, not yet resolved
        session.get_one(Tenant, midori).external_id = "midori.example.jp"
        session.get_one(Tenant, sakura).external_id = "sakura.example.jp"
    looked = []
    real_holder = tenants._holder

    def raced(session: Session, tenant: Tenant, resolved: str) -> str | None:
        looked.append(resolved)
        if len(looked) == 1:  # sakura's look-up ran before midori's bind committed
            with transaction(sessions) as other:
                row = other.get_one(Tenant, midori)
                tenants.bind_tenant(other, row, "midori.example.jp", SAKURA)
            return None
        return real_holder(session, tenant, resolved)

    monkeypatch.setattr(tenants, "_holder", raced)
    with pytest.raises(ConfigError) as refused:
        with transaction(sessions) as session:
            row = session.get_one(Tenant, sakura)
            tenants.bind_tenant(session, row, "sakura.example.jp", SAKURA)

    message = str(refused.value)
    assert "'sakura-seisakusho'" in message and "'midori-shoji'" in message, message
    with sessions() as session:
        assert session.get_one(Tenant, midori).external_id == SAKURA
