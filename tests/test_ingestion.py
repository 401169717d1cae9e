"""Ingestion stores every alert exactly once, whatever moment a poll dies at."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpx import HTTPXMock
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.connectors.base import AlertRecord, DeviceRecord, Evidence, IncidentRecord
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.ingest import records
from edrtrial.ingest.polling import ingest_tenant, sync_inventory
from edrtrial.models import Alert, Device, Incident, QuarantinedRecord
from edrtrial.sandbox import SAMPLE_TENANTS, SandboxServer, SandboxWorld
from edrtrial.timeutil import Stamp

from conftest import add_tenant
from fakes import Crash, FakeConnector
from sandbox_config import sandbox_config
from test_defender_support import MACHINES_URL, fake_sign_in, make_connector
from test_defender_support import payload as defender_payload

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
POLLED = T0 + timedelta(hours=1)  # when the tests poll, unless they say: after every alert


def alert(n: int, minutes: int, severity: str = "low", status: str = "new") -> AlertRecord:
    return AlertRecord(
        source_id=f"a{n}",
        title=f"alert {n}",
        severity=severity,
        status=status,
        last_update_at=Stamp.of(T0 + timedelta(minutes=minutes)),
        created_at=T0,
    )


@pytest.fixture
def tenant_id(sessions: sessionmaker[Session]) -> int:
    return add_tenant(sessions, "acme", "Acme", connector="fake")


def stored(sessions: sessionmaker[Session]) -> dict[str, Alert]:
    with sessions() as session:
        return {a.source_id: a for a in session.scalars(select(Alert))}


def test_a_poll_stores_every_alert_and_moves_the_cursor_to_the_newest(sessions, tenant_id):
    connector = FakeConnector(page_size=3)
    for n in range(10):
        connector.alerts[f"a{n}"] = alert(n, minutes=n)
    result = ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    assert (result.pages, result.alerts.inserted) == (4, 10)
    assert set(stored(sessions)) == {f"a{n}" for n in range(10)}
    with sessions() as session:
        assert records.get_cursor(session, tenant_id, "alerts") == Stamp.of(
            T0 + timedelta(minutes=9)
        )


def test_a_poll_that_dies_mid_way_keeps_the_old_cursor_and_the_rerun_stores_each_once(
    sessions, tenant_id
):
    connector = FakeConnector(page_size=3)
    for n in range(10):
        connector.alerts[f"a{n}"] = alert(n, minutes=n)
    connector.crash_after_pages = 2
    with pytest.raises(Crash):
        ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    # The first page is committed; the second waited to learn whether it was the last.
    assert len(stored(sessions)) == 3
    with sessions() as session:
        assert records.get_cursor(session, tenant_id, "alerts") is None

    connector.crash_after_pages = None
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    with sessions() as session:
        assert session.scalar(select(func.count(Alert.id))) == 10
        assert records.get_cursor(session, tenant_id, "alerts") == Stamp.of(
            T0 + timedelta(minutes=9)
        )


def test_a_changed_alert_updates_the_stored_row_and_an_old_copy_does_not(sessions, tenant_id):
    connector = FakeConnector(page_size=10, overlap=timedelta(minutes=5))
    connector.alerts["a1"] = alert(1, minutes=1)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    connector.alerts["a1"] = alert(1, minutes=20, status="resolved")
    result = ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    assert (result.alerts.inserted, result.alerts.updated) == (0, 1)
    assert stored(sessions)["a1"].status == "resolved"

    with transaction(sessions) as session:  # a stale copy arriving late changes nothing
        records.upsert_alerts(session, tenant_id, "fake", [alert(1, minutes=2, status="new")])
    assert stored(sessions)["a1"].status == "resolved"


def test_overlap_refetches_harmlessly(sessions, tenant_id):
    connector = FakeConnector(page_size=2, overlap=timedelta(hours=1))
    for n in range(4):
        connector.alerts[f"a{n}"] = alert(n, minutes=n)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    again = ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    assert again.fetched == 4  # all inside the overlap window
    assert (again.alerts.inserted, again.alerts.updated) == (0, 0)
    assert len(stored(sessions)) == 4


def test_a_record_stamped_in_the_future_does_not_carry_the_cursor_past_now(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = alert(1, minutes=1)
    connector.alerts["bad"] = AlertRecord(
        source_id="bad",
        title="clock skew",
        severity="low",
        status="new",
        last_update_at=Stamp.of(datetime(2099, 1, 1, tzinfo=UTC)),
    )
    now = T0 + timedelta(hours=1)
    ingest_tenant(sessions, tenant_id, connector, now=now)
    with sessions() as session:
        assert records.get_cursor(session, tenant_id, "alerts") == Stamp.of(now)
    connector.alerts["a2"] = alert(2, minutes=90)  # arrives later, stamped normally
    ingest_tenant(sessions, tenant_id, connector, now=now + timedelta(hours=1))
    assert "a2" in stored(sessions)


def test_the_first_poll_starts_at_the_given_initial_time(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = alert(1, minutes=-600)  # before the trial began
    connector.alerts["a2"] = alert(2, minutes=5)
    ingest_tenant(sessions, tenant_id, connector, initial_since=T0, now=POLLED)
    assert set(stored(sessions)) == {"a2"}


def test_a_record_that_cannot_be_mapped_is_quarantined_once_and_the_page_goes_in(
    sessions, tenant_id
):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = alert(1, minutes=1)
    connector.bad_alerts = [{"id": "broken-1", "severity": "high"}]
    assert ingest_tenant(sessions, tenant_id, connector, now=POLLED).quarantined == 1
    # Seen again: still one row, counted twice.
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    assert set(stored(sessions)) == {"a1"}
    with sessions() as session:
        [row] = session.scalars(select(QuarantinedRecord)).all()
        assert (row.source_id, row.reason, row.times_seen) == ("broken-1", "no title", 2)
        assert row.raw == {"id": "broken-1", "severity": "high"}


def test_incidents_are_read_only_for_new_or_changed_alerts(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = dataclasses.replace(alert(1, minutes=1), incident_source_id="77")
    connector.incidents["77"] = IncidentRecord(
        source_id="77",
        title="Multi-stage incident",
        severity="high",
        status="active",
        last_update_at=Stamp.of(T0),
    )
    now = T0 + timedelta(hours=1)
    assert ingest_tenant(sessions, tenant_id, connector, now=now).incidents.inserted == 1
    ingest_tenant(sessions, tenant_id, connector, now=now)  # nothing new: no incident call
    assert connector.incident_requests == [["77"]]
    with sessions() as session:
        assert session.scalar(select(Incident.title)) == "Multi-stage incident"


# --- evidence and device tags --------------------------------------------------------------


EVIDENCE = Evidence(
    users=("tanaka", "SAKURA\\tanaka"),
    file_hashes=("ab" * 32,),
    ips=("198.51.100.7",),
)


def with_evidence(record: AlertRecord, evidence: Evidence) -> AlertRecord:
    return dataclasses.replace(record, evidence=evidence)


def triaged(sessions: sessionmaker[Session], source_id: str) -> None:
    with transaction(sessions) as session:
        row = session.scalars(select(Alert).where(Alert.source_id == source_id)).one()
        row.triaged_at = T0


def test_evidence_is_stored_on_insert_only_the_kinds_present(sessions, tenant_id):
    connector = FakeConnector(page_size=10)  # one page: the bulk insert path
    connector.alerts["a1"] = with_evidence(alert(1, minutes=1), EVIDENCE)
    connector.alerts["a2"] = alert(2, minutes=2)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)

    rows = stored(sessions)
    assert rows["a1"].evidence == {
        "users": ["tanaka", "SAKURA\\tanaka"],
        "file_hashes": ["ab" * 32],
        "ips": ["198.51.100.7"],
    }
    assert rows["a2"].evidence == {}


def test_changed_evidence_is_stored_and_sends_the_alert_back_to_triage(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = with_evidence(alert(1, minutes=1), EVIDENCE)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    triaged(sessions, "a1")

    more = dataclasses.replace(EVIDENCE, urls=("https://phish.example/login",))
    connector.alerts["a1"] = with_evidence(alert(1, minutes=5), more)
    result = ingest_tenant(sessions, tenant_id, connector, now=POLLED)

    assert result.alerts.updated == 1
    row = stored(sessions)["a1"]
    assert row.evidence["urls"] == ["https://phish.example/login"]
    assert row.triaged_at is None  # a rule on URLs may now match


def test_an_update_with_the_same_evidence_keeps_the_triage(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = with_evidence(alert(1, minutes=1), EVIDENCE)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    triaged(sessions, "a1")

    connector.alerts["a1"] = with_evidence(alert(1, minutes=5, status="inprogress"), EVIDENCE)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)

    row = stored(sessions)["a1"]
    assert (row.status, row.evidence["ips"]) == ("inprogress", ["198.51.100.7"])
    assert row.triaged_at is not None


def test_evidence_that_disappears_is_cleared_and_retriaged(sessions, tenant_id):
    connector = FakeConnector(page_size=10)
    connector.alerts["a1"] = with_evidence(alert(1, minutes=1), EVIDENCE)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)
    triaged(sessions, "a1")

    connector.alerts["a1"] = alert(1, minutes=5)
    ingest_tenant(sessions, tenant_id, connector, now=POLLED)

    row = stored(sessions)["a1"]
    assert (row.evidence, row.triaged_at) == ({}, None)


def device(source_id: str, *tags: str) -> DeviceRecord:
    return DeviceRecord(source_id=source_id, name=f"{source_id}.sakura.example", tags=tags)


def device_tags(sessions: sessionmaker[Session]) -> dict[str, list[str]]:
    with sessions() as session:
        return {d.source_id: d.tags for d in session.scalars(select(Device))}


def test_inventory_sync_stores_device_tags_on_insert_and_update(sessions, tenant_id):
    connector = FakeConnector()
    connector.devices = [device("d1", "server", "vip"), device("d2")]
    sync_inventory(sessions, tenant_id, connector, T0)
    assert device_tags(sessions) == {"d1": ["server", "vip"], "d2": []}

    connector.devices = [device("d1"), device("d2", "vip")]
    sync_inventory(sessions, tenant_id, connector, T0)
    assert device_tags(sessions) == {"d1": [], "d2": ["vip"]}


def test_defender_machine_tags_reach_the_stored_device(
    sessions, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    tenant = add_tenant(sessions, "sakura", "Sakura")
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        json=defender_payload("mde__list_machines.json"),
    )
    connector = make_connector(monkeypatch, tmp_path)
    try:
        sync_inventory(sessions, tenant, connector, T0)
    finally:
        connector.close()

    assert device_tags(sessions) == {
        "1e5bc9d7e413ddd7902c2932e418702b84d0cc07": ["test tag 1", "test tag 2"]
    }


# --- values longer than the store's columns ----------------------------------------------------


def test_a_300_character_device_name_and_title_do_not_stop_the_tenants_polling(
    tmp_path: Path, now: datetime, database_url: str
):
    """A device named with 300 characters (device.name holds 255) and a 300-character title:
    both polls go through, the stored name is cut to its column and `raw` keeps it whole."""
    world = SandboxWorld(seed=5, tenants=1, alert_interval_seconds=3600)
    server = SandboxServer(world, host="127.0.0.1", port=0, state_dir=tmp_path / "sandbox")
    server.start()
    tenant = SAMPLE_TENANTS[0].tenant_id
    name = "pc-" + "x" * 300 + ".sakura.example.jp"
    title = "不審な外部通信 " + "y" * 300
    try:
        config = sandbox_config(tmp_path, server, database_url, companies=1)
        cli = CliRunner()
        assert cli.invoke(main, ["--config", str(config), "db", "upgrade"]).exit_code == 0
        world.clear_tenant(tenant)
        [device] = world.add_devices(tenant, 1, detection_test_alert=False)
        world.rename_device(tenant, device, name)
        world.add_alerts(tenant, "c2_beacon", device_id=device, text={"title": title})
        first = cli.invoke(main, ["--config", str(config), "poll"])
        world.add_alerts(tenant, "c2_beacon")  # a later alert of the same tenant
        second = cli.invoke(main, ["--config", str(config), "poll"])
    finally:
        server.stop()

    assert (first.exit_code, second.exit_code) == (0, 0), (first.output, second.output)
    with make_sessions(make_engine(database_url))() as session:
        alerts = session.scalars(select(Alert)).all()
        stored_device = session.scalars(select(Device).where(Device.source_id == device)).one()
    assert len(alerts) == 2
    assert title in [a.title for a in alerts]
    assert stored_device.name == name[: Device.__table__.c.name.type.length]
    assert stored_device.raw["computerDnsName"] == name
