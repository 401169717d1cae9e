"""One company's whole way in, as the secretariat walks it through the CLI against the sandbox
(HTTPS, MSAL): a CP932 CSV row from the web form, eligible; the call; the pre-diagnosis, a
place in the cohort; the consent link opened in the administrator's browser and its reply
recorded; `tenants verify` refused while a permission is withdrawn, then passed; the trial
started; its first PC read by a poll, listed unverified until it runs the detection test,
then verified, counted so by `seats`, and `company show` saying where it stands."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from click.testing import CliRunner, Result
from intake_rows import csv_bytes, row

from edrtrial.cli.common import login_name
from edrtrial.cli.main import main
from edrtrial.sandbox import SAMPLE_TENANTS, SandboxServer, SandboxWorld

import clock
from sandbox_config import serving, settings, write_config

SAKURA = SAMPLE_TENANTS[0]
KEY = "c-1012345"  # the company's key: from its 法人番号 5010801012345
REDIRECT = "https://secretariat.example.jp/consent"


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    # An alert a week on each tenant: the fortnight this test lets pass brings few.
    world = SandboxWorld(seed=5, tenants=3, alert_interval_seconds=7 * 86400)
    with serving(world, tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, sandbox: SandboxServer, database_url: str) -> Path:
    """The programme's app on the sandbox, its consent replies to the secretariat's page, and
    an empty store, migrated (`db upgrade` is run by the test)."""
    data = settings(
        database_url,
        base_url=sandbox.base_url,
        state_dir=sandbox.state_dir,
        mail_dir=tmp_path / "mail",
    )
    data["programme"]["consent_redirect_uri"] = REDIRECT
    return write_config(tmp_path / "config.toml", data, companies=0)


def cli(config: Path, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        main, ["--config", str(config), *args], env={"COLUMNS": "200"}, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result


def browser(sandbox: SandboxServer) -> httpx.Client:
    """What the administrator (or the operator on the sandbox's controls) browses with."""
    return httpx.Client(verify=ssl.create_default_context(cafile=str(sandbox.ca_path)))


def control(sandbox: SandboxServer, path: str, body: dict[str, object]) -> dict[str, object]:
    with browser(sandbox) as client:
        answer = client.post(f"{sandbox.base_url}/sandbox/{path}", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def lines(result: Result) -> list[str]:
    """What the terminal shows, without the service's log lines."""
    return [line for line in result.output.splitlines() if " INFO " not in line]


def seats_of(config: Path) -> dict[str, object]:
    [company] = json.loads("\n".join(lines(cli(config, "seats", "--json"))))
    result: dict[str, object] = company
    return result


def test_a_company_from_its_cp932_csv_row_to_a_verified_device(tmp_path, config, sandbox):
    me = f"cli:{login_name()}"
    cli(config, "db", "upgrade")

    # The web form's export, saved by Excel on Japanese Windows: CP932, with ① and ～.
    form = tmp_path / "応募.csv"
    form.write_bytes(
        csv_bytes(
            [
                row(
                    受付日時=f"{clock.day(-1):%Y/%m/%d} 10:12",
                    担当者メール=f"it@{SAKURA.domain}",
                    備考="①平日9:00～17:00に連絡希望",
                )
            ],
            encoding="cp932",
        )
    )
    imported = lines(cli(config, "applications", "import", str(form)))
    assert imported[0] == "応募.csv (cp932): 1 rows"
    assert imported[1].startswith(f"line 2: {KEY} 株式会社さくら製作所: eligible, call due ")
    assert imported[-1].startswith("1 imported (1 eligible, ")

    cli(config, "cohorts", "add", "c1", "--name", "第1期", "--capacity", "50")
    called = cli(config, "applications", "call", KEY, "--notes", "規定・遵守事項に同意").output
    assert f"{KEY}: call_confirmed (a place in cohort c1)" in called
    diagnosed = cli(
        config, "applications", "prediagnose", KEY, "--edr-users", "40", "--no-existing-edr",
        "--antivirus", "Microsoft Defender Antivirus", "--free-hub-ports", "4",
        "--network", "光回線1本、ルーター配下にスイッチ1台", "--policy", "partial",
    ).output  # fmt: skip
    assert f"{KEY}: admitted (a place in cohort c1)" in diagnosed

    # The consent link, opened by the company's global administrator in a browser.
    sent = cli(config, "tenants", "consent-url", KEY).output
    assert "グローバル管理者" in sent and "山田 太郎 様" in sent
    link = next(line for line in sent.splitlines() if "/v2.0/adminconsent?" in line).strip()
    with browser(sandbox) as admin:
        answer = admin.get(f"{link}&{urlencode({'login_hint': f'admin@{SAKURA.domain}'})}")
    assert answer.status_code == 302, answer.text
    landed = answer.headers["location"]
    assert landed.startswith(f"{REDIRECT}?admin_consent=True")
    consented = cli(config, "tenants", "consented", KEY, "--reply", landed).output
    assert f"{KEY}: consent recorded, tenant {SAKURA.tenant_id} (consented, 同意済)" in consented
    assert f"next: edrtrial tenants verify {KEY}" in consented

    # The tenant's administrator withdrew one permission: named, and the company waits.
    isolate = {"tenant": SAKURA.tenant_id, "permission": "Machine.Isolate"}
    control(sandbox, "permissions", {**isolate, "granted": False})
    refused = cli(config, "tenants", "verify", KEY, code=1).output
    assert "✗ Machine.Isolate (isolate and release a PC): not granted" in refused
    assert f"{KEY}: not verified: 1 of 8 checks failed; the company stays consented" in refused
    assert f"edrtrial tenants consent-url {KEY}" in refused
    control(sandbox, "permissions", {**isolate, "granted": True})
    verified = cli(config, "tenants", "verify", KEY).output
    assert "✗" not in verified
    assert f"{KEY}: verified (tenant_verified, 接続確認済)" in verified

    started = cli(config, "trial", "start", KEY).output
    end = clock.day(91)
    assert f"株式会社さくら製作所 ({KEY}): trial from {clock.TODAY} to {end}" in started

    # A freshly provisioned tenant: its first PC onboards, not yet tested.
    control(sandbox, "clear", {"tenant": SAKURA.tenant_id})
    control(
        sandbox,
        "devices",
        {"tenant": SAKURA.tenant_id, "os_platform": "Windows11", "detection_test": False},
    )
    [device] = sandbox.world.device_ids(SAKURA.tenant_id)
    cli(config, "poll")
    seats = seats_of(config)
    assert (seats["planned"], seats["onboarded"], seats["tested"]) == (40, 1, 0)
    assert lines(cli(config, "tenants", "unverified"))[-1].startswith("0 unverified")

    with clock.travel(clock.NOW + timedelta(days=15)):
        control(sandbox, "tick", {})  # the fortnight passes in the tenant too
        listed = lines(cli(config, "tenants", "unverified"))
        assert any(line.split()[:3] == [KEY, "体験中", "device"] for line in listed), listed
        assert listed[-1].startswith("1 unverified after 14 days")

        # The PC runs Defender's detection test; the next poll reads it.
        control(
            sandbox,
            "alerts",
            {"tenant": SAKURA.tenant_id, "kind": "detection_test", "device_id": device},
        )
        cli(config, "poll")
        assert lines(cli(config, "tenants", "unverified"))[-1].startswith("0 unverified")
        seats = seats_of(config)
        assert (seats["onboarded"], seats["active_7d"], seats["tested"]) == (1, 1, 1)

        shown = "\n".join(lines(cli(config, "company", "show", KEY)))
    assert f"state: in_trial 体験中 since {clock.TODAY}" in shown
    assert "as received: 備考: ①平日9:00～17:00に連絡希望" in shown
    assert f"tenant: {SAKURA.tenant_id} (defender)" in shown
    assert f"trial: {clock.TODAY} (Wed) to {end}" in shown
    assert f"edrtrial trial decide {KEY} continue|offboard|extend" in shown
    # Who did what: the operator's login for each step, the rules for the verdict.
    for step in (
        "company.judge_eligible applied → eligible  by intake",
        f"company.call eligible → call_confirmed  by {me}",
        f"company.admit pre_diagnosed → admitted  by {me}",
        f"company.consent_url  by {me}",
        f"company.consent admitted → consented  by {me}",
        f"company.verify_failed  by {me}",
        f"company.verify consented → tenant_verified  by {me}",
        f"company.start tenant_verified → in_trial  by {me}",
    ):
        assert step in shown
