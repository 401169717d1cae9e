"""CyCraft AIR adapter against a local fake server: mapping, paging, actions, errors, config."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.config import load_companies
from edrtrial.connectors import connector_class
from edrtrial.connectors.base import (
    ActionKind,
    ActionStatus,
    AlertRecord,
    AlertUpdate,
    Capability,
    Connector,
    DeviceRef,
    Evidence,
    Rejected,
)
from edrtrial.connectors.cycraft import CyCraftAdapter, CyCraftSettings
from edrtrial.connectors.cycraft import client as cycraft_client
from edrtrial.db import transaction
from edrtrial.devices import actions
from edrtrial.errors import (
    ActionRefused,
    AuthError,
    ConfigError,
    OutcomeUnknown,
    PermanentError,
    SchemaDriftError,
    TransientError,
    Unmappable,
)
from edrtrial.models import Device, Tenant, Trial
from edrtrial.timeutil import Stamp

from conftest import add_tenant
from test_cycraft_support import BASE, ORG, FakeCyCraft, Reply, Seen, payload

API_KEY = "cc-live-7Hq2Zs9VxK41"
KEY_ENV = "EDRTRIAL_TEST_CYCRAFT_KEY"
ALERTS = f"{BASE}/alerts"
SINCE = Stamp.from_iso("2024-05-01T03:00:00Z")

Make = Callable[..., CyCraftAdapter]


@pytest.fixture
def fake() -> Iterator[FakeCyCraft]:
    server = FakeCyCraft(API_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make(fake: FakeCyCraft, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Make]:
    """Builds adapters on the fake; keyword arguments override the connection block."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setattr(cycraft_client, "REREAD_PAUSE", 0.001)  # re-reads without a real wait
    built: list[CyCraftAdapter] = []

    def build(**overrides: Any) -> CyCraftAdapter:
        block = {
            "connector": "cycraft",
            "tenant_id": ORG,
            "base_url": fake.url,
            "api_key": f"env:{KEY_ENV}",
            **overrides,
        }
        adapter = CyCraftAdapter.from_settings(block, tmp_path)
        built.append(adapter)
        return adapter

    yield build
    for adapter in built:
        adapter.close()


def two_alert_pages(request: Seen) -> Reply:
    page = request.query.get("page")
    return Reply(body=payload(f"cycraft__alerts_page{page}.json"))


def fetch(adapter: CyCraftAdapter, since: Stamp | None) -> tuple[list[AlertRecord], list[Any]]:
    records, rejected = [], []
    for batch in adapter.fetch_alerts(since):
        records.extend(batch.records)
        rejected.extend(batch.rejected)
    return records, rejected


# --- contract and configuration ---------------------------------------------------------


def test_entry_point_finds_the_adapter_and_it_meets_the_contract(make: Make) -> None:
    assert connector_class("cycraft") is CyCraftAdapter
    adapter = make()
    assert isinstance(adapter, Connector)
    assert isinstance(adapter, CyCraftAdapter)
    assert adapter.name == "cycraft"
    assert adapter.tenant_id == ORG
    assert CyCraftAdapter.settings_model is CyCraftSettings


def test_every_shipped_default_is_marked_as_an_assumption() -> None:
    text = (files("edrtrial.connectors.cycraft") / "defaults.toml").read_text(encoding="utf-8")
    keys = [line for line in text.splitlines() if re.match(r"^\s*[\w\"-]+\s*=", line)]
    assert keys
    assert [line for line in keys if "# assumed" not in line] == []


def test_a_wrong_mapping_key_is_refused_naming_the_key(make: Make) -> None:
    block = {
        "connector": "cycraft",
        "tenant_id": ORG,
        "base_url": "https://air.example",
        "api_key": "env:X",
        "mapping": {"alerts": {"fields": {"titel": "rule.name"}}},
    }
    with pytest.raises(ValidationError) as caught:
        CyCraftSettings.model_validate(block)
    [error] = caught.value.errors()
    assert error["loc"] == ("mapping", "alerts", "fields", "titel")
    assert error["type"] == "extra_forbidden"

    with pytest.raises(ConfigError, match=r"mapping\.alerts\.fields\.titel: unknown key"):
        make(mapping={"alerts": {"fields": {"titel": "rule.name"}}})


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"mapping": {"actions": {"isolate": {"path": "/x/{devce_id}/isolate"}}}},
            r"mapping\.actions\.isolate\.path: .*unknown placeholder \{devce_id\}",
        ),
        (
            {"mapping": {"incidents": {"path": "/incidents"}}},
            r"mapping\.incidents\.path: .*must contain \{id\}",
        ),
        ({"mapping": {"severity_map": {"5": "critical"}}}, r"mapping\.severity_map\.5:"),
        ({"mapping": {"alerts": {"fields": {"id": ""}}}}, r"mapping\.alerts\.fields\.id:"),
        ({"auth_template": "Bearer"}, r"auth_template: .*must contain \{key\}"),
        ({"api_key": API_KEY}, r"api_key: .*must be a reference"),
    ],
)
def test_bad_mapping_values_are_refused_naming_the_key(
    make: Make, override: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        make(**override)
    assert API_KEY not in str(caught.value)


def test_a_cycraft_block_of_a_company_is_checked_by_the_adapter(tmp_path: Path) -> None:
    """As `companies import-config` reads it: the adapter's own model names the key."""
    text = (
        '[[companies]]\nkey = "sakura-seisakusho"\nname = "株式会社さくら製作所"\n'
        'contact_email = "it@sakura.example.jp"\nplanned_seats = 15\n'
        "trial = { started_days_ago = 70, days = 92 }\n"
        '[companies.connection]\nconnector = "cycraft"\ntenant_id = "org-42"\n'
        'base_url = "https://air.example"\napi_key = "env:CYCRAFT_KEY"\n'
        '[companies.connection.mapping.devices.fields]\nhostname = "name"\n'
    )
    path = tmp_path / "companies.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"companies\[0\]\.connection\.mapping\.devices"):
        load_companies(path)


# --- alerts ---------------------------------------------------------------------------


def test_alerts_are_mapped_and_paged_with_the_since_filter(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, two_alert_pages)

    records, _ = fetch(make(page_size=3), SINCE)

    first, second, fourth = records
    assert first.source_id == "al-1001"
    assert first.title == "Suspicious PowerShell download cradle"
    assert first.description.startswith("powershell.exe")
    assert first.status == "new"  # "Open" via status_map
    assert first.created_at == datetime(2024, 5, 1, 2, 55, 10, tzinfo=UTC)
    assert first.last_update_at == Stamp.of(datetime(2024, 5, 1, 3, 1, 12, 345000, tzinfo=UTC))
    assert first.incident_source_id == "inc-77"
    assert first.category == "execution"
    assert first.mitre_techniques == ("T1059.001", "T1105")
    assert first.devices == (DeviceRef("ep-01", "SAKURA-PC01"),)
    assert first.raw["rule"] == {"name": "PS-Download-Exec", "version": 3}  # unknown fields kept
    # A numeric id, epoch milliseconds and no updated_at (falls back to created_at).
    assert second.source_id == "1002"
    assert (
        second.last_update_at.datetime == second.created_at == datetime(2024, 5, 1, 3, tzinfo=UTC)
    )
    assert second.incident_source_id is None
    assert fourth.source_id == "al-1004"

    pages = fake.seen("GET", ALERTS)
    assert [r.query for r in pages] == [
        {"updated_after": "2024-05-01T02:55:00Z", "limit": "3", "page": str(n)} for n in (1, 2)
    ]
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in pages)


def test_first_poll_sends_no_since_filter(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, Reply(body={"data": []}))
    assert fetch(make(), None) == ([], [])
    [request] = fake.seen()
    assert request.query == {"limit": "100", "page": "1"}


def test_severities_are_mapped_and_unknown_ones_kept_lower_cased(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    records, _ = fetch(make(page_size=3), SINCE)
    # "Critical" -> high, 4 -> high, "Severe" (not in the table) kept lower-cased.
    assert [r.severity for r in records] == ["high", "high", "severe"]
    assert records[-1].status == "escalated"  # an unknown status is kept too


def test_a_tenant_can_extend_the_severity_table(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    adapter = make(page_size=3, mapping={"severity_map": {"Severe": "medium", "4": "medium"}})
    records, _ = fetch(adapter, SINCE)
    assert [r.severity for r in records] == ["high", "medium", "medium"]


def test_bad_records_are_rejected_and_the_rest_of_the_page_kept(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    batches = list(make(page_size=3).fetch_alerts(SINCE))

    assert [len(b.records) for b in batches] == [2, 1]
    [bad_time] = batches[0].rejected
    assert isinstance(bad_time, Rejected)
    assert (bad_time.kind, bad_time.source_id) == ("alert", "al-1003")
    assert "created" in bad_time.reason and "updated" in bad_time.reason
    assert bad_time.raw["title"] == "Alert with a timestamp nobody can read"
    [no_id] = batches[1].rejected
    assert (no_id.kind, no_id.source_id, no_id.reason) == ("alert", "", "no id at 'id'")
    assert not batches[0].complete


def test_the_public_contract_maps_an_alert_with_the_shipped_mapping(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    polled, _ = fetch(make(page_size=3), SINCE)
    first = payload("cycraft__alerts_page1.json")["data"]
    second = payload("cycraft__alerts_page2.json")["data"]

    assert [CyCraftAdapter.map_alert(item) for item in first[:2] + second[:1]] == polled
    with pytest.raises(Unmappable, match=r"^created: .*; updated: "):
        CyCraftAdapter.map_alert(first[2])
    with pytest.raises(Unmappable, match=r"^no id at 'id'$"):
        CyCraftAdapter.map_alert(second[1])
    with pytest.raises(Unmappable, match=r"^not a JSON object \(int\)$"):
        CyCraftAdapter.map_alert(1001)


def test_map_alert_follows_the_shipped_mapping_not_a_tenants_overrides(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    adapter = make(page_size=3, mapping={"alerts": {"fields": {"title": "rule.name"}}})
    [polled, *_], _ = fetch(adapter, SINCE)
    item = payload("cycraft__alerts_page1.json")["data"][0]

    assert polled.title == "PS-Download-Exec"
    assert adapter.map_alert(item).title == "Suspicious PowerShell download cradle"


def test_alert_payloads_reads_the_shipped_envelopes() -> None:
    page = payload("cycraft__alerts_page1.json")
    single = payload("cycraft__incident_inc-77.json")  # a single object comes as {"data": {}}
    payloads = CyCraftAdapter.alert_payloads

    assert payloads(page) == page["data"]
    assert payloads(page["data"]) == page["data"]
    assert payloads(single) == [single["data"]]
    assert payloads(page["data"][0]) == [page["data"][0]]


def test_overriding_one_json_path_keeps_the_other_defaults(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    adapter = make(page_size=3, mapping={"alerts": {"fields": {"title": "rule.name"}}})
    records, _ = fetch(adapter, SINCE)
    assert [r.title for r in records] == ["PS-Download-Exec", "LSASS-Access", "C2-Beacon"]
    assert records[0].devices == (DeviceRef("ep-01", "SAKURA-PC01"),)  # defaults still apply


def test_evidence_is_gathered_from_the_default_paths(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    records, _ = fetch(make(page_size=3), SINCE)
    first, second, fourth = records

    # users: user.name, then evidence.users ("sakura\\TANAKA" repeats the first, by case)
    assert first.evidence == Evidence(
        users=("SAKURA\\tanaka", "tanaka@sakura.example"),
        file_hashes=(  # every sha256, then sha1, then md5; lower-cased
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
            "098f6bcd4621d373cade4e832627b4f6",
        ),
        ips=("198.51.100.20",),
        urls=("https://dl.evil.example/a.ps1",),
    )
    # Values of the wrong type are skipped one by one; the alert itself is kept.
    assert second.evidence == Evidence(users=("administrator",))
    assert fourth.evidence == Evidence()


def test_a_tenant_can_remap_or_switch_off_evidence_paths(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, two_alert_pages)
    adapter = make(
        page_size=3,
        mapping={
            "alerts": {
                "fields": {
                    "users": "rule.name",  # one path is accepted where a list is expected
                    "file_hashes": [],
                    "ips": ["evidence.network.0.remote_ip"],
                }
            }
        },
    )
    first, _, _ = fetch(adapter, SINCE)[0]
    assert first.evidence == Evidence(
        users=("PS-Download-Exec",),
        ips=("198.51.100.20",),
        urls=("https://dl.evil.example/a.ps1",),  # not overridden: the default path
    )


def test_a_bad_evidence_path_is_refused_naming_the_key(make: Make) -> None:
    with pytest.raises(ConfigError, match=r"mapping\.alerts\.fields\.ips\.1: .*dotted JSON path"):
        make(mapping={"alerts": {"fields": {"ips": ["net.ip", "net..ip"]}}})
    with pytest.raises(ConfigError, match=r"mapping\.devices\.fields\.tags\.0: .*at most one"):
        make(mapping={"devices": {"fields": {"tags": ["groups.*.tags.*"]}}})


def test_cursor_paging_and_epoch_since(fake: FakeCyCraft, make: Make) -> None:
    alert = payload("cycraft__alerts_page1.json")["data"][0]
    pages = {
        None: {"items": [alert], "next": "c2"},
        "c2": {"items": [{**alert, "id": "al-2"}], "next": None},
    }
    fake.route("GET", ALERTS, lambda r: Reply(body=pages[r.query.get("after")]))
    adapter = make(
        mapping={
            "paging": {
                "style": "cursor",
                "items_path": "items",
                "cursor_param": "after",
                "next_cursor_path": "next",
                "size_param": "",
            },
            "alerts": {"since_format": "epoch_seconds", "params": {"sort": "updated_at"}},
        }
    )
    records, _ = fetch(adapter, SINCE)
    assert [r.source_id for r in records] == ["al-1001", "al-2"]
    first, second = fake.seen()
    assert first.query == {"updated_after": "1714532100", "sort": "updated_at"}
    assert second.query == {"updated_after": "1714532100", "sort": "updated_at", "after": "c2"}


def test_a_page_without_the_list_is_schema_drift(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, Reply(body={"results": []}))
    with pytest.raises(SchemaDriftError, match=rf"{re.escape(ALERTS)} sent no list at 'data'"):
        fetch(make(), SINCE)


@pytest.mark.parametrize(
    "unreadable",
    [
        Reply(body=b'{"data": [{"id": "al-10'),
        Reply(body=b"<html><h1>502 Bad Gateway</h1></html>", headers={"Content-Type": "text/html"}),
        Reply(body=b""),
        Reply(body={"results": []}),
    ],
    ids=["cut short", "a proxy's page", "empty", "no list"],
)
def test_an_unreadable_page_is_read_again_within_the_poll(
    fake: FakeCyCraft, make: Make, unreadable: Reply
) -> None:
    fake.script("GET", ALERTS, unreadable)
    fake.route("GET", ALERTS, Reply(body=payload("cycraft__alerts_page2.json")))

    records, _ = fetch(make(page_size=50), SINCE)

    assert [r.source_id for r in records] == ["al-1004"]
    assert len(fake.seen("GET", ALERTS)) == 2


def test_a_cursor_page_without_its_list_is_read_again(fake: FakeCyCraft, make: Make) -> None:
    fake.script("GET", ALERTS, Reply(body={"next_cursor": "c2"}))
    fake.route("GET", ALERTS, Reply(body=payload("cycraft__alerts_page2.json")))
    adapter = make(page_size=50, mapping={"paging": {"style": "cursor"}})

    records, _ = fetch(adapter, SINCE)

    assert [r.source_id for r in records] == ["al-1004"]


def test_a_page_that_never_parses_fails_after_three_reads(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", ALERTS, Reply(body=b"\x00garbage\x00"))
    with pytest.raises(SchemaDriftError, match=r"answered 200 with a body that is not JSON .*, 3 "):
        fetch(make(), SINCE)
    assert len(fake.seen("GET", ALERTS)) == 3


# --- incidents and devices ---------------------------------------------------------------


def test_incidents_by_id_and_a_vanished_one_left_out(fake: FakeCyCraft, make: Make) -> None:
    fake.route(
        "GET", f"{BASE}/incidents/inc-77", Reply(body=payload("cycraft__incident_inc-77.json"))
    )
    batch = make().fetch_incidents(["inc-77", "inc-gone", "inc-77"])
    [incident] = batch.records
    assert incident.source_id == "inc-77"
    assert (incident.severity, incident.status) == ("high", "inprogress")
    assert incident.last_update_at == Stamp.of(datetime(2024, 5, 1, 3, 5, tzinfo=UTC))
    assert batch.complete
    assert len(fake.seen("GET", f"{BASE}/incidents/inc-77")) == 1


def test_devices_are_mapped_and_a_bad_one_marks_the_inventory_partial(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", f"{BASE}/endpoints", Reply(body=payload("cycraft__endpoints.json")))
    batch = make().fetch_devices()
    windows, mac = batch.records
    assert (windows.source_id, windows.name, windows.os_platform) == (
        "ep-01",
        "SAKURA-PC01",
        "Windows",
    )
    assert (windows.os_version, windows.health_status, windows.onboarding_status) == (
        "10.0.19045",
        "online",
        "installed",
    )
    assert windows.risk_score == "high"
    assert windows.last_seen == Stamp.of(datetime(2024, 5, 1, 3, 0, tzinfo=UTC))
    assert mac.first_seen == datetime(2024, 4, 1, 0, 0, tzinfo=UTC)  # epoch seconds
    assert windows.tags == ("VIP", "Finance")  # text only, each once, in order
    assert mac.tags == ("designer-mac",)  # a lone tag where a list was assumed
    [rejected] = batch.rejected
    assert (rejected.kind, rejected.reason) == ("device", "no id at 'id'")
    assert not batch.complete


def test_without_a_devices_path_there_is_no_inventory(make: Make) -> None:
    adapter = make(mapping={"devices": {"path": ""}})
    assert Capability.DEVICES not in adapter.capabilities
    with pytest.raises(PermanentError, match=r"mapping\.devices\.path is empty"):
        adapter.fetch_devices()


# --- actions -----------------------------------------------------------------------------


def test_isolate_then_read_its_status(fake: FakeCyCraft, make: Make) -> None:
    fake.route(
        "GET", f"{BASE}/endpoints/ep-01/tasks", Reply(body=payload("cycraft__tasks_ep-01.json"))
    )
    fake.route(
        "POST", f"{BASE}/endpoints/ep-01/isolate", Reply(201, payload("cycraft__task_created.json"))
    )
    fake.route(
        "GET", f"{BASE}/tasks/task-9001", Reply(body=payload("cycraft__task_completed.json"))
    )
    adapter = make()

    started = adapter.start_action("ep-01", ActionKind.ISOLATE, "ransomware suspected")
    assert (started.source_action_id, started.status) == ("task-9001", ActionStatus.PENDING)
    [post] = fake.seen("POST")
    assert post.body == {"comment": "ransomware suspected"}

    done = adapter.action_status("task-9001")
    assert done.status is ActionStatus.SUCCEEDED and done.status.terminal


def test_an_open_task_of_the_same_kind_is_reused(fake: FakeCyCraft, make: Make) -> None:
    fake.route(
        "GET", f"{BASE}/endpoints/ep-01/tasks", Reply(body=payload("cycraft__tasks_ep-01.json"))
    )
    result = make().start_action("ep-01", ActionKind.AV_SCAN, "scan please")
    assert (result.source_action_id, result.status) == ("task-8000", ActionStatus.IN_PROGRESS)
    assert fake.seen("POST") == []


def test_offboard_and_which_platforms_can_be_offboarded(fake: FakeCyCraft, make: Make) -> None:
    fake.route(
        "POST",
        f"{BASE}/endpoints/ep-01/uninstall",
        Reply(200, {"data": {"id": "task-9100", "type": "uninstall", "status": "running"}}),
    )
    adapter = make(mapping={"actions": {"tasks": ""}})
    result = adapter.start_action("ep-01", ActionKind.OFFBOARD, "trial ended")
    assert (result.source_action_id, result.status) == ("task-9100", ActionStatus.IN_PROGRESS)

    assert adapter.can_offboard("Windows") and adapter.can_offboard("Windows Server 2019")
    assert not adapter.can_offboard("macOS") and not adapter.can_offboard("")
    wider = make(offboard_platforms=["windows", "mac os"])
    assert wider.can_offboard("macOS 14")
    assert not make(mapping={"actions": {"offboard": {"path": ""}}}).can_offboard("Windows")


def test_an_unknown_task_status_is_schema_drift(fake: FakeCyCraft, make: Make) -> None:
    fake.route("GET", f"{BASE}/tasks/t-1", Reply(body={"data": {"id": "t-1", "status": "zombie"}}))
    with pytest.raises(SchemaDriftError, match="'zombie'.*status_map"):
        make().action_status("t-1")


ISOLATE = f"{BASE}/endpoints/ep-01/isolate"


@pytest.mark.parametrize(
    "lost",
    [
        Reply(503, {"error": "maintenance"}),
        Reply(201, payload("cycraft__task_created.json"), delay=1.0),
        Reply(201, b'{"data": {"id": "task-90'),
        Reply(201, b""),
    ],
    ids=["5xx", "no answer in time", "an answer cut short", "an empty answer"],
)
def test_an_isolation_without_a_readable_answer_may_have_been_carried_out(
    fake: FakeCyCraft, make: Make, lost: Reply
) -> None:
    fake.route("GET", f"{BASE}/endpoints/ep-01/tasks", Reply(body={"data": []}))
    fake.route("POST", ISOLATE, lost)

    with pytest.raises(OutcomeUnknown, match="org-42"):
        make(timeout_seconds=0.3).start_action("ep-01", ActionKind.ISOLATE, "ransomware")

    assert len(fake.seen("POST", ISOLATE)) == 1  # sent once, never again by the client


def test_an_isolation_cycraft_did_not_answer_is_left_unconfirmed_and_not_sent_twice(
    fake: FakeCyCraft, make: Make, sessions: sessionmaker[Session]
) -> None:
    """CyCraft recorded the task and answered 503: the desk must not isolate a second time."""
    at = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    tenant_id = add_tenant(sessions, "cc", "株式会社シーシー", connector="cycraft")
    with transaction(sessions) as session:
        session.get_one(Tenant, tenant_id).external_id = ORG
        company_id = session.get_one(Tenant, tenant_id).company_id
        session.add(
            Trial(company_id=company_id, starts_on=date(2026, 9, 1), ends_on=date(2026, 11, 30))
        )
        device = Device(
            tenant_id=tenant_id,
            source_id="ep-01",
            name="pc-1",
            os_platform="Windows",
            in_inventory=True,
            health_status="Active",
            last_seen=at,
        )
        session.add(device)
        session.flush()
        action_id = actions.plan(session, device, ActionKind.ISOLATE, actor="cli:sato", at=at).id
    fake.route("GET", f"{BASE}/endpoints/ep-01/tasks", Reply(body={"data": []}))
    fake.script("POST", ISOLATE, Reply(503, {"error": "maintenance"}))
    fake.route("POST", ISOLATE, Reply(201, payload("cycraft__task_created.json")))

    sent = actions.send(sessions, action_id, make(), "cli:sato", lambda: at)

    assert sent.status == "unconfirmed", sent.detail
    with transaction(sessions) as session, pytest.raises(ActionRefused):
        device = session.scalars(select(Device)).one()
        actions.plan(session, device, ActionKind.ISOLATE, actor="cli:suzuki", at=at)
    assert len(fake.seen("POST", ISOLATE)) == 1


def test_an_isolation_that_never_reached_cycraft_is_known_not_sent(
    fake: FakeCyCraft, make: Make
) -> None:
    fake.route("GET", f"{BASE}/endpoints/ep-01/tasks", Reply(body={"data": []}))
    fake.route("POST", ISOLATE, Reply(429, payload("cycraft__error_429.json")))
    unreachable = make(base_url="http://127.0.0.1:9", mapping={"actions": {"tasks": ""}})

    for adapter in (make(), unreachable):
        with pytest.raises(TransientError) as caught:
            adapter.start_action("ep-01", ActionKind.ISOLATE, "ransomware")
        assert not isinstance(caught.value, OutcomeUnknown), caught.value


def test_write_back_only_when_a_path_is_configured(fake: FakeCyCraft, make: Make) -> None:
    update = AlertUpdate(status="resolved", classification="falsepositive", comment="benign")
    default = make()
    assert Capability.WRITE_BACK not in default.capabilities
    assert CyCraftAdapter.capabilities == default.capabilities
    with pytest.raises(PermanentError, match=r"mapping\.write_back\.path is empty"):
        default.update_alert("al-1001", update)

    fake.route("PATCH", f"{BASE}/alerts/al-1001", Reply(204))
    writer = make(mapping={"write_back": {"path": "/api/v1/organizations/{tenant_id}/alerts/{id}"}})
    assert Capability.WRITE_BACK in writer.capabilities
    assert isinstance(writer, Connector) and isinstance(writer, CyCraftAdapter)
    writer.update_alert("al-1001", update)
    [patch] = fake.seen("PATCH")
    assert patch.body == {"status": "closed", "comment": "benign"}  # no classification field


# --- errors ------------------------------------------------------------------------------


def test_429_with_retry_after_is_transient(fake: FakeCyCraft, make: Make) -> None:
    fake.script("GET", ALERTS, Reply(429, payload("cycraft__error_429.json"), {"Retry-After": "7"}))
    with pytest.raises(TransientError, match="429.*rate_limited") as caught:
        fetch(make(), SINCE)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("reply", "error", "pattern"),
    [
        (Reply(503, {"error": "maintenance"}), TransientError, "answered 503"),
        (Reply(400, {"error": "bad filter"}), PermanentError, "answered 400: .*bad filter"),
        (
            Reply(200, b"<html>login</html>"),
            SchemaDriftError,
            rf"GET http://\S+{re.escape(ALERTS)} answered 200 .*not JSON",
        ),
        (Reply(200, {"data": []}, delay=1.0), TransientError, "timed out"),
    ],
)
def test_failures_become_edrtrial_errors(
    fake: FakeCyCraft, make: Make, reply: Reply, error: type[Exception], pattern: str
) -> None:
    fake.route("GET", ALERTS, reply)
    with pytest.raises(error, match=pattern):
        fetch(make(timeout_seconds=0.3), SINCE)


def test_a_refused_key_is_an_auth_error_and_never_repeated(
    fake: FakeCyCraft, make: Make, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "cc-live-WRONGwrong123"
    adapter = make()
    monkeypatch.setenv(KEY_ENV, wrong)
    stale = make()

    with pytest.raises(AuthError, match="answered 401") as caught:
        fetch(stale, SINCE)
    assert "renew the API key" in caught.value.operator_action
    assert "organisation id" in caught.value.operator_action
    assert "**********" in str(caught.value)  # the server echoed the key; we masked it

    fake.script("GET", f"{BASE}/endpoints", Reply(403, {"error": "forbidden"}))
    with pytest.raises(AuthError) as forbidden:
        adapter.fetch_devices()
    assert "organisation id" in forbidden.value.operator_action

    fake.route("GET", ALERTS, two_alert_pages)
    fetch(adapter, SINCE)
    for secret in (API_KEY, wrong):
        assert secret not in caplog.text
        for err in (caught.value, forbidden.value):
            assert secret not in f"{err} {err.operator_action}"
