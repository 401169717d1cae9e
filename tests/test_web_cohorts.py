"""The cohort dashboard in the console: each cohort's places, seats against the cap, the
trial calendar with days left and decisions, the uninstall's progress and each tenant's
polling, with the same figures as `edrtrial seats --json` and `trial calendar --json`, and
nothing of a cohort outside the person's scope."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edrtrial.db import transaction
from edrtrial.models import Tenant

from web_programme_data import OTHER_COHORT, OTHER_KEY, OTHER_NAME, add_other_cohort
from web_support import Console, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        add_other_cohort(running)
        yield running


def cli_json(console: Console, *args: str) -> list[dict]:
    from edrtrial.cli.main import main

    result = CliRunner().invoke(main, ["--config", str(console.config.path), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cells(html: str, section: str, key: str, css: str) -> str:
    """The text of the cell `css` in the row of company `key` in the page's section."""
    part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    row = part.split(f'data-company="{key}"', 1)[1].split("</tr>", 1)[0]
    found = re.search(rf'class="[^"]*{css}[^"]*"[^>]*>(.*?)</td>', row, re.S)
    assert found, (key, css)
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def test_the_cohort_list_and_its_dashboard_match_the_cli(console: Console) -> None:
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    listed = web.get("/cohorts").text
    assert 'data-cohort="sample-1"' in listed and f'data-cohort="{OTHER_COHORT}"' in listed
    page = web.get("/cohorts/sample-1")
    assert page.status_code == 200
    html = page.text
    seats = [r for r in cli_json(console, "seats") if r["company"] != OTHER_KEY]
    assert seats, "the sample programme holds seats"
    for record in seats:
        assert cells(html, "seats", record["company"], "onboarded") == str(record["onboarded"])
    calendar = [e for e in cli_json(console, "trial", "calendar") if e["cohort"] == "sample-1"]
    assert {e["company"] for e in calendar} == set(
        re.findall(r'data-company="([^"]+)"', html.split('id="calendar"')[1].split("</section>")[0])
    )
    for entry in calendar:
        row = html.split('id="calendar"')[1].split(f'data-company="{entry["company"]}"')[1]
        assert f'data-days="{entry["days_left"]}"' in row.split("</tr>")[0]
    # midori-shoji's trial ended undecided: its devices are being uninstalled.
    devices = sum(e["offboarding"]["devices"] for e in calendar)
    assert f'<dd class="total">{devices}</dd>' in html
    assert OTHER_NAME not in html


def test_a_parked_tenant_is_shown_with_its_reason(console: Console) -> None:
    with transaction(console.runtime.sessions) as session:
        tenant = session.query(Tenant).filter(Tenant.external_id == "t-kirishima").one()
        tenant.state, tenant.state_reason = "parked", "consent revoked <b>by admin</b>"
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    html = web.get(f"/cohorts/{OTHER_COHORT}").text
    assert cells(html, "tenants", OTHER_KEY, "tenant-state") == "停止中"
    assert "consent revoked &lt;b&gt;by admin&lt;/b&gt;" in html
    listed = web.get("/cohorts").text
    row = listed.split(f'data-cohort="{OTHER_COHORT}"')[1].split("</tr>")[0]
    assert '<span class="late">1</span>' in row


def test_a_person_limited_to_a_cohort_sees_only_it(console: Console) -> None:
    password = console.add_user("kato", ["viewer"], cohorts=["sample-1"])
    web = console.signed_in("kato", password)
    listed = web.get("/cohorts").text
    assert 'data-cohort="sample-1"' in listed and OTHER_COHORT not in listed
    assert web.get(f"/cohorts/{OTHER_COHORT}").status_code == 404
    assert web.get("/cohorts/nowhere").status_code == 404
    assert OTHER_NAME not in web.get("/cohorts/sample-1").text


def test_a_cohort_s_capacity_and_intake_change_as_the_cli_changes_them(console: Console) -> None:
    from sqlalchemy import select

    from edrtrial.models import AuditEvent, Cohort

    def cohort() -> Cohort:
        with console.runtime.sessions() as session:
            return session.scalars(select(Cohort).where(Cohort.key == "sample-1")).one()

    before = cohort()
    viewer = console.signed_in("mori", console.add_user("mori", ["viewer"]))
    assert 'data-step="cohort-settings"' not in viewer.get("/cohorts/sample-1").text
    refused = viewer.post("/cohorts/sample-1/settings", {"capacity": "50", "taking": "open"})
    assert refused.status_code == 403
    limited = console.signed_in(
        "kato", console.add_user("kato", ["secretariat"], cohorts=[OTHER_COHORT])
    )
    gone = limited.post("/cohorts/sample-1/settings", {"capacity": "50", "taking": "open"})
    assert gone.status_code == 404

    web = console.signed_in("suzuki", console.add_user("suzuki", ["secretariat"]))
    assert 'data-step="cohort-settings"' in web.get("/cohorts/sample-1").text
    # Fewer places than are held: refused with the service's reason, nothing changed.
    web.post("/cohorts/sample-1/settings", {"capacity": "1", "taking": "open"})
    page = web.get("/cohorts/sample-1").text
    assert "変更できませんでした" in page and "sample-1" in page
    web.post("/cohorts/sample-1/settings", {"capacity": "x", "taking": "open"})
    assert "定員は1以上の整数" in web.get("/cohorts/sample-1").text
    assert cohort().capacity == before.capacity and not cohort().closed

    more = before.capacity + 5
    answer = web.post("/cohorts/sample-1/settings", {"capacity": str(more), "taking": "closed"})
    assert answer.status_code == 303 and answer.headers["location"] == "/cohorts/sample-1"
    page = web.get("/cohorts/sample-1").text
    assert f"期 sample-1: 定員 {more} 社、受付終了。" in page
    after = cohort()
    assert after.capacity == more and after.closed
    with console.runtime.sessions() as session:
        [changed] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "cohort.changed")
        ).all()
    assert changed.actor == "web:suzuki" and changed.target == "cohort:sample-1"
    assert changed.detail["to"] == {"capacity": more, "closed": True}
