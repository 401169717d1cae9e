"""A company's connection against the sandbox: the consent link, the consent recorded from
the administrator's reply, `tenants verify` (and once with a permission withdrawn)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.models import AuditEvent, Company, Device, Tenant
from edrtrial.sandbox import SAMPLE_CLIENT_ID, SAMPLE_TENANTS, SandboxServer

from sandbox_config import sample_world, serving, settings, write_config

SAKURA, MIDORI = SAMPLE_TENANTS[0], SAMPLE_TENANTS[1]
REDIRECT = "https://secretariat.example.jp/consent"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    with serving(sample_world(), tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def store(database_url: str) -> sessionmaker[Session]:
    engine = make_engine(database_url)
    upgrade(engine)
    return make_sessions(engine)


def programme_config(tmp_path: Path, sandbox: SandboxServer, database_url: str) -> Path:
    """No [[companies]]: the programme's app on the sandbox, companies in the store."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    data["programme"]["consent_redirect_uri"] = REDIRECT
    return write_config(tmp_path / "config.toml", data, companies=0)


@pytest.fixture
def config(tmp_path: Path, sandbox: SandboxServer, database_url: str, store) -> Path:
    return programme_config(tmp_path, sandbox, database_url)


def admitted(
    store: sessionmaker[Session], key: str, state: str = "admitted", **values: Any
) -> None:
    with transaction(store) as session:
        session.add(
            Company(
                key=key,
                name=values.pop("name", f"{key} 株式会社"),
                contact_name="山田 太郎",
                contact_email=f"it@{key}.example.jp",
                state=state,
                **values,
            )
        )


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def link_of(output: str) -> str:
    return next(line for line in output.splitlines() if "/v2.0/adminconsent?" in line).strip()


def browser_of(sandbox: SandboxServer) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(sandbox.ca_path)))


def consent_in_browser(sandbox: SandboxServer, url: str, account: str) -> str:
    """The administrator opens the link and signs in as `account`: where the browser lands."""
    with browser_of(sandbox) as browser:
        answer = browser.get(f"{url}&{urlencode({'login_hint': account})}")
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def company_state(store: sessionmaker[Session], key: str) -> str:
    with store() as session:
        return session.scalars(select(Company.state).where(Company.key == key)).one()


def tenant_of(store: sessionmaker[Session], key: str) -> Tenant | None:
    with store() as session:
        return session.scalar(
            select(Tenant).join(Company, Tenant.company_id == Company.id).where(Company.key == key)
        )


# --- the consent link -------------------------------------------------------------------------


def test_the_consent_link_is_entras_v2_admin_consent_for_both_apis_printed_whole(
    config, store, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal cuts nothing of the link
    admitted(store, "sakura")
    output = cli(config, "tenants", "consent-url", "sakura").output

    url = link_of(output)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/organizations/v2.0/adminconsent"
    assert query["client_id"] == SAMPLE_CLIENT_ID
    assert query["scope"].split() == [
        "https://graph.microsoft.com/.default",
        "https://api.securitycenter.microsoft.com/.default",
    ]
    assert query["redirect_uri"] == REDIRECT
    assert len(query["state"]) >= 32
    # The mail the secretariat sends: who opens it and what they will see, with the link.
    assert "グローバル管理者" in output and "承諾" in output
    assert output.count(url) == 2
    with store() as session:
        [issued] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.consent_url")
        ).all()
    assert issued.target == "company:sakura" and issued.actor.startswith("cli:")
    assert query["state"] not in json.dumps(issued.detail)  # only its hash is kept


def test_a_consent_link_is_for_an_admitted_company_only(config, store):
    admitted(store, "sakura", state="pre_diagnosed")
    result = cli(config, "tenants", "consent-url", "sakura", code=2)
    assert "is pre_diagnosed (事前診断済)" in result.output
    assert "admitted" in result.output
    verify = cli(config, "tenants", "verify", "sakura", code=2).output
    assert "no consented tenant to verify yet" in verify


def test_a_link_sent_again_names_the_tenant_and_speaks_the_companys_language(config, store):
    admitted(store, "aozora", language="en")
    cli(config, "tenants", "consented", "aozora", "--tenant-id", SAMPLE_TENANTS[2].tenant_id)

    output = cli(config, "tenants", "consent-url", "aozora").output

    assert f"/{SAMPLE_TENANTS[2].tenant_id}/v2.0/adminconsent?" in link_of(output)
    assert "grant admin consent once more" in output and "Global Administrator" in output


# --- consent recorded -------------------------------------------------------------------------


def test_a_reply_from_the_administrators_browser_records_the_tenant_and_the_consent(
    config, store, sandbox
):
    admitted(store, "sakura")
    url = link_of(cli(config, "tenants", "consent-url", "sakura").output)
    landed = consent_in_browser(sandbox, url, f"admin@{SAKURA.domain}")
    assert landed.startswith(REDIRECT + "?admin_consent=True")

    output = cli(config, "tenants", "consented", "sakura", "--reply", landed).output

    assert f"consent recorded, tenant {SAKURA.tenant_id}" in output
    assert company_state(store, "sakura") == "consented"
    tenant = tenant_of(store, "sakura")
    assert tenant is not None and tenant.connector == "defender" and tenant.consented_at
    with store() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.consent")
        ).one()
    assert event.detail["to"] == "consented" and event.detail["via"] == "reply"
    assert event.actor.startswith("cli:")
    # The whole way from the link: verified, the service may poll it.
    cli(config, "tenants", "verify", "sakura")
    assert company_state(store, "sakura") == "tenant_verified"


def test_a_reply_whose_state_was_made_up_or_issued_for_another_company_is_refused(
    config, store, sandbox
):
    admitted(store, "sakura")
    admitted(store, "midori")
    url = link_of(cli(config, "tenants", "consent-url", "midori").output)
    landed = consent_in_browser(sandbox, url, f"admin@{MIDORI.domain}")

    other = cli(config, "tenants", "consented", "sakura", "--reply", landed, code=2).output
    assert "belongs to company 'midori'" in other and "nothing was recorded" in other

    forged = landed.replace("state=", "state=x")
    made_up = cli(config, "tenants", "consented", "midori", "--reply", forged, code=2).output
    assert "state was not issued by `tenants consent-url`" in made_up
    assert company_state(store, "sakura") == "admitted"
    assert company_state(store, "midori") == "admitted"
    assert tenant_of(store, "sakura") is None and tenant_of(store, "midori") is None


def test_a_reply_is_used_once_and_not_replayed_after_a_correction(config, store, sandbox):
    admitted(store, "sakura")
    # The first link is opened by the wrong administrator: Midori's tenant is recorded.
    first = link_of(cli(config, "tenants", "consent-url", "sakura").output)
    wrong = consent_in_browser(sandbox, first, f"admin@{MIDORI.domain}")
    cli(config, "tenants", "consented", "sakura", "--reply", wrong)
    assert tenant_of(store, "sakura").external_id == MIDORI.tenant_id  # type: ignore[union-attr]
    # The secretariat corrects it by hand: replaying the first reply cannot undo that.
    cli(config, "tenants", "consented", "sakura", "--tenant-id", SAKURA.tenant_id)
    replayed = cli(config, "tenants", "consented", "sakura", "--reply", wrong, code=2).output
    assert "already recorded once" in replayed and "nothing was recorded" in replayed
    assert tenant_of(store, "sakura").external_id == SAKURA.tenant_id  # type: ignore[union-attr]

    # A link sent again (to Sakura's tenant) is answered once; its reply used again is refused.
    second = link_of(cli(config, "tenants", "consent-url", "sakura").output)
    right = consent_in_browser(sandbox, second, f"admin@{SAKURA.domain}")
    cli(config, "tenants", "consented", "sakura", "--reply", right)
    cli(config, "tenants", "consented", "sakura", "--tenant-id", MIDORI.tenant_id)
    again = cli(config, "tenants", "consented", "sakura", "--reply", right, code=2).output
    assert "already recorded once" in again
    assert tenant_of(store, "sakura").external_id == MIDORI.tenant_id  # type: ignore[union-attr]


def test_a_reply_to_a_link_a_newer_one_replaced_is_refused(config, store, sandbox):
    admitted(store, "sakura")
    old = link_of(cli(config, "tenants", "consent-url", "sakura").output)
    cli(config, "tenants", "consent-url", "sakura")
    landed = consent_in_browser(sandbox, old, f"admin@{SAKURA.domain}")

    output = cli(config, "tenants", "consented", "sakura", "--reply", landed, code=2).output

    assert "a newer one" in output and "nothing was recorded" in output
    assert company_state(store, "sakura") == "admitted" and tenant_of(store, "sakura") is None


def test_an_entra_error_reply_is_explained_and_records_nothing(config, store):
    admitted(store, "sakura")
    url = link_of(cli(config, "tenants", "consent-url", "sakura").output)
    state = parse_qs(urlsplit(url).query)["state"][0]
    reply = (
        f"{REDIRECT}?error=access_denied&error_description=AADSTS90094%3A+The+grant+requires+"
        f"admin+permission.&state={state}"
    )
    output = cli(config, "tenants", "consented", "sakura", "--reply", reply, code=2).output
    assert "consent was not given" in output
    assert "a global administrator must open the link" in output
    assert "AADSTS90094" in output and "nothing was recorded" in output
    assert company_state(store, "sakura") == "admitted"


@pytest.mark.parametrize(
    "spelling", [SAKURA.tenant_id.upper(), "{" + SAKURA.tenant_id + "}", SAKURA.tenant_id]
)
def test_a_tenant_another_company_holds_is_refused_in_any_spelling(config, store, spelling):
    admitted(store, "sakura")
    admitted(store, "impostor")
    cli(config, "tenants", "consented", "sakura", "--tenant-id", SAKURA.tenant_id)

    output = cli(config, "tenants", "consented", "impostor", "--tenant-id", spelling, code=2).output

    assert f"tenant {SAKURA.tenant_id} is held by company 'sakura'" in output
    assert company_state(store, "impostor") == "admitted"


def test_a_domain_another_company_holds_is_refused_whatever_its_case(config, store):
    admitted(store, "sakura")
    admitted(store, "impostor")
    cli(config, "tenants", "consented", "sakura", "--tenant-id", SAKURA.domain)
    output = cli(
        config, "tenants", "consented", "impostor", "--tenant-id", SAKURA.domain.upper(), code=2
    ).output
    assert f"tenant {SAKURA.domain} is held by company 'sakura'" in output


def test_a_mistyped_tenant_id_is_corrected_until_the_tenant_holds_data(config, store):
    admitted(store, "sakura")
    cli(config, "tenants", "consented", "sakura", "--tenant-id", MIDORI.tenant_id)
    cli(config, "tenants", "consented", "sakura", "--tenant-id", SAKURA.tenant_id)
    tenant = tenant_of(store, "sakura")
    assert tenant is not None and tenant.external_id == SAKURA.tenant_id
    with store() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.consent_corrected")
        ).one()
    assert event.detail["from"] == MIDORI.tenant_id and event.detail["to"] == SAKURA.tenant_id

    with transaction(store) as session:
        session.add(Device(tenant_id=tenant.id, source_id="d1", name="pc-1"))
    output = cli(
        config, "tenants", "consented", "sakura", "--tenant-id", MIDORI.tenant_id, code=2
    ).output
    assert "already holds data read from tenant" in output
    assert tenant_of(store, "sakura").external_id == SAKURA.tenant_id  # type: ignore[union-attr]


# --- verify against the sandbox ----------------------------------------------------------------


def consented_sakura(config: Path, store: sessionmaker[Session]) -> None:
    admitted(store, "sakura")
    cli(config, "tenants", "consented", "sakura", "--tenant-id", SAKURA.tenant_id)


def test_verify_with_everything_granted_verifies_the_tenant(config, store, sandbox):
    consented_sakura(config, store)

    output = cli(config, "tenants", "verify", "sakura").output

    assert "✗" not in output
    for check in (
        "sign-in to Microsoft Graph",
        "Graph alerts_v2 (SecurityAlert.Read.All)",
        "Graph incidents (SecurityIncident.Read.All)",
        "MDE machines (Machine.Read.All)",
        "MDE machine actions (Machine.Read.All)",
        "Machine.Isolate (isolate and release a PC)",
        "Machine.Offboard",
    ):
        assert f"✓ {check}" in output
    assert "sakura: verified (tenant_verified, 接続確認済)" in output
    assert company_state(store, "sakura") == "tenant_verified"
    tenant = tenant_of(store, "sakura")
    assert tenant is not None and tenant.verified_at is not None
    counts = sandbox.world.request_counts(SAKURA.tenant_id)
    assert counts["graph:list_alerts"] == 1 and counts["mde:list_machines"] == 1
    assert not any("isolate" in name or "offboard" in name for name in counts)  # nothing acted


def test_verify_with_a_permission_withdrawn_names_it_and_the_company_stays_consented(
    config, store, sandbox
):
    consented_sakura(config, store)
    sandbox.world.set_permission(SAKURA.tenant_id, "Machine.Isolate", False)

    output = cli(config, "tenants", "verify", "sakura", code=1).output

    assert "✗ Machine.Isolate (isolate and release a PC): not granted" in output
    assert "Add Machine.Isolate (Defender for Endpoint API, application permission)" in output
    assert "edrtrial tenants consent-url sakura" in output
    assert "✓ MDE machines (Machine.Read.All)" in output
    assert company_state(store, "sakura") == "consented"
    with store() as session:
        failed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "company.verify_failed")
        ).one()
    assert failed.detail["failed"] == ["Machine.Isolate (isolate and release a PC)"]

    sandbox.world.set_consent(SAKURA.tenant_id, True)  # the administrator consents again
    cli(config, "tenants", "verify", "sakura")
    assert company_state(store, "sakura") == "tenant_verified"


def test_a_read_refused_with_403_names_the_missing_role_from_the_api(config, store, sandbox):
    consented_sakura(config, store)
    sandbox.world.set_permission(SAKURA.tenant_id, "SecurityIncident.Read.All", False)

    output = cli(config, "tenants", "verify", "sakura", code=1).output

    assert "✗ Graph incidents (SecurityIncident.Read.All): 403: the programme's app lacks" in output
    assert "Missing application roles. API required roles:" in output
    assert "✓ Graph alerts_v2 (SecurityAlert.Read.All)" in output
    assert company_state(store, "sakura") == "consented"


def test_verify_without_consent_in_the_tenant_says_send_the_consent_link(config, store, sandbox):
    consented_sakura(config, store)
    sandbox.world.set_consent(SAKURA.tenant_id, False)

    output = cli(config, "tenants", "verify", "sakura", code=1).output

    assert "AADSTS65001: no admin consent for the programme's app" in output
    assert "not tried: no sign-in" in output
    assert "edrtrial tenants consent-url sakura" in output
    assert company_state(store, "sakura") == "consented"


def test_the_sandbox_consent_for_organizations_picks_the_tenant_by_the_accounts_domain(
    sandbox, now
):
    sandbox.world.set_consent(MIDORI.tenant_id, False)
    base = f"{sandbox.base_url}/organizations/v2.0/adminconsent"
    params = {"client_id": SAMPLE_CLIENT_ID, "redirect_uri": REDIRECT, "state": "s1"}
    with browser_of(sandbox) as browser:
        picker = browser.get(base, params=params)
        landed = browser.get(base, params={**params, "domain_hint": MIDORI.domain})
    assert picker.status_code == 200 and f"admin@{MIDORI.domain}" in picker.text
    reply = parse_qs(urlsplit(landed.headers["location"]).query)
    assert reply["tenant"] == [MIDORI.tenant_id] and reply["state"] == ["s1"]
    assert sandbox.world.summary()["tenants"][1]["consent"] is True


def test_verify_that_cannot_reach_the_network_says_so_and_changes_nothing(
    tmp_path, store, database_url, sandbox, httpx_mock
):
    config = programme_config(tmp_path, sandbox, database_url)
    consented_sakura(config, store)
    httpx_mock.add_exception(httpx.ConnectTimeout("timed out"), is_reusable=True)

    output = cli(config, "tenants", "verify", "sakura", code=1).output

    assert "✗ sign-in to Microsoft Graph: no answer from" in output
    assert "could not be reached (no connection, or no answer in time)" in output
    assert company_state(store, "sakura") == "consented"


def test_the_sandbox_control_withdraws_a_permission_and_tokens_carry_roles(sandbox, now):
    control = f"{sandbox.base_url}/sandbox/permissions"
    secret = sandbox.secret_path(SAKURA.tenant_id).read_text().strip()
    form = {
        "grant_type": "client_credentials",
        "client_id": SAMPLE_CLIENT_ID,
        "client_secret": secret,
        "scope": "https://api.securitycenter.microsoft.com/.default",
    }
    with browser_of(sandbox) as client:
        withdrawn = client.post(
            control,
            json={"tenant": SAKURA.key, "permission": "Machine.Offboard", "granted": False},
        ).json()
        token = client.post(
            f"{sandbox.base_url}/{SAKURA.tenant_id}/oauth2/v2.0/token", data=form
        ).json()["access_token"]
        listed = client.get(control, params={"tenant": SAKURA.key}).json()
        offboard = client.post(
            f"{sandbox.base_url}/api/machines/x/offboard",
            json={"Comment": "test"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert "Machine.Offboard" not in withdrawn["permissions"] == listed["permissions"]
    roles = jwt.decode(token, options={"verify_signature": False})["roles"]
    assert roles == ["Machine.Isolate", "Machine.Read.All", "Machine.Scan"]
    assert offboard.status_code == 403
    error = offboard.json()["error"]
    assert error["code"] == "Forbidden" and "target" in error
    assert error["message"].startswith(
        "Missing application roles. API required roles: Machine.Offboard, application roles:"
    )
