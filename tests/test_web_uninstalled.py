"""A device the EDR cannot uninstall remotely is confirmed uninstalled by hand from the
company's page, as `trial uninstalled` does it, audited as the person."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from edrtrial.models import AuditEvent
from edrtrial.sandbox import SAMPLE_TENANTS
from edrtrial.service import jobs

from test_trial_lifecycle import offboard_tasks
from web_support import Console

KEY = "midori-shoji"  # its trial ended undecided: its devices are being uninstalled
MIDORI = SAMPLE_TENANTS[1]


@pytest.fixture
def console(sandboxed_console: Console) -> Console:
    return sandboxed_console


def offboarding(console: Console) -> dict[str, str]:
    return offboard_tasks(console.runtime.sessions, KEY)


def test_a_device_handed_over_for_a_manual_uninstall_is_confirmed_from_the_page(
    console: Console,
) -> None:
    [mac] = console.world.add_devices(MIDORI.tenant_id, 1, platform="macOS")
    jobs.inventory(console.runtime)
    jobs.trial_lifecycle(console.runtime)
    tasks = offboarding(console)
    [manual] = [name for name, status in tasks.items() if status == "manual"]
    assert manual.startswith("mac")
    password = console.add_user("suzuki", ["secretariat"])
    web = console.signed_in("suzuki", password)
    page = web.get(f"/companies/{KEY}").text
    assert page.count('data-step="uninstalled"') == 1  # only the device that waits for it
    viewer = console.signed_in("mori", console.add_user("mori", ["viewer"]))
    assert 'data-step="uninstalled"' not in viewer.get(f"/companies/{KEY}").text

    # A device that does not wait for it is refused, in Japanese, and nothing changes.
    other = next(name for name, status in tasks.items() if status != "manual")
    web.post(f"/companies/{KEY}/uninstalled", {"device": other, "note": ""})
    page = web.get(f"/companies/{KEY}").text
    assert "手作業でのアンインストールを待つ端末に" in page and offboarding(console) == tasks

    answer = web.post(
        f"/companies/{KEY}/uninstalled", {"device": manual, "note": "スクリプトで削除"}
    )
    assert answer.status_code == 303
    page = web.get(f"/companies/{KEY}").text
    assert f"{manual} のアンインストールを確認しました。" in page
    assert offboarding(console)[manual] == "verified"  # as `trial uninstalled` leaves it
    with console.runtime.sessions() as session:
        [done] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "offboarding.uninstalled")
        ).all()
    assert done.actor == "web:suzuki" and done.detail == {
        "device": manual,
        "note": "スクリプトで削除",
    }
    assert 'data-step="uninstalled"' not in page
