"""Microsoft stamps changes to the 100 ns: an update one tick newer than the stored copy is
applied, a copy one tick older is not, and the cursor keeps all seven digits.

Most tests poll through the Defender connector with the documented payloads, changing only
the stamps and the status, as Graph and MDE send them; the last one runs against the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pytest_httpx import HTTPXMock
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.connectors.cycraft import CyCraftAdapter
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.db import make_engine, make_sessions
from edrtrial.errors import Unmappable
from edrtrial.ingest.polling import ingest_tenant, sync_inventory
from edrtrial.models import Alert, Device, Incident, QuarantinedRecord
from edrtrial.sandbox import SAMPLE_TENANTS, SandboxServer, SandboxWorld
from edrtrial.timeutil import Stamp

from conftest import add_tenant
from sandbox_config import sandbox_config
from test_cycraft_support import payload as cycraft_payload
from test_defender_support import (
    ALERTS_URL,
    INCIDENTS_URL,
    MACHINES_URL,
    fake_sign_in,
    graph_list,
    make_connector,
    payload,
)

DOC_ALERT = payload("graph__list_alerts_v2.json")["value"][0]  # stamped ...01.3266667Z
DOC_INCIDENT = payload("graph__list_incidents.json")["value"][0]  # stamped ...45.1133333Z
DOC_MACHINE = payload("mde__list_machines.json")["value"][0]  # last seen ...03.7791856Z
POLLED = datetime(2021, 10, 1, tzinfo=UTC)  # after every documented stamp
ANY_QUERY = r"(\?.*)?$"


@pytest.fixture
def tenant(sessions: sessionmaker[Session]) -> int:
    return add_tenant(sessions, "sakura", "Sakura")


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


class Served:
    """Answers each request to one URL with the next body of a list; records the requests."""

    def __init__(self, httpx_mock: HTTPXMock, url: str, bodies: list[dict[str, Any]]) -> None:
        self.bodies = list(bodies)
        self.requests: list[httpx.Request] = []
        httpx_mock.add_callback(
            self._answer, url=re.compile(re.escape(url) + ANY_QUERY), is_reusable=True
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.bodies.pop(0))


def alert_version(stamp: str, status: str, incident: str | None = None) -> dict[str, Any]:
    return DOC_ALERT | {"lastUpdateDateTime": stamp, "status": status, "incidentId": incident}


def stored_alert(sessions: sessionmaker[Session]) -> Alert:
    with sessions() as session:
        return session.scalars(select(Alert)).one()


def test_an_alert_updated_100_ns_later_is_applied_and_a_copy_100_ns_older_is_not(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    Served(
        httpx_mock,
        ALERTS_URL,
        [
            graph_list([alert_version("2021-05-02T14:19:01.3266667Z", "new")]),
            graph_list([alert_version("2021-05-02T14:19:01.3266668Z", "resolved")]),
            # A lagging replica answers the version before: it must not undo the resolution.
            graph_list([alert_version("2021-05-02T14:19:01.3266667Z", "inProgress")]),
        ],
    )

    ingest_tenant(sessions, tenant, connector, now=POLLED)
    assert stored_alert(sessions).status == "new"

    second = ingest_tenant(sessions, tenant, connector, now=POLLED)
    assert (second.alerts.updated, stored_alert(sessions).status) == (1, "resolved")

    third = ingest_tenant(sessions, tenant, connector, now=POLLED)
    assert (third.alerts.updated, stored_alert(sessions).status) == (0, "resolved")


def test_an_incident_updated_100_ns_later_is_applied_and_a_copy_100_ns_older_is_not(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    # Each poll brings a newer alert of the incident, so the incident is read each time.
    Served(
        httpx_mock,
        ALERTS_URL,
        [
            graph_list([alert_version(f"2021-09-30T09:0{n}:00.0000000Z", "new", "2972395")])
            for n in range(3)
        ],
    )
    Served(
        httpx_mock,
        f"{INCIDENTS_URL}/2972395",
        [
            DOC_INCIDENT,
            DOC_INCIDENT
            | {"lastUpdateDateTime": "2021-09-30T09:35:45.1133334Z", "status": "resolved"},
            DOC_INCIDENT,  # the version before, again
        ],
    )

    def incident_status() -> str:
        with sessions() as session:
            return session.scalars(select(Incident.status)).one()

    ingest_tenant(sessions, tenant, connector, now=POLLED)
    assert incident_status() == "active"
    assert ingest_tenant(sessions, tenant, connector, now=POLLED).incidents.updated == 1
    assert incident_status() == "resolved"
    assert ingest_tenant(sessions, tenant, connector, now=POLLED).incidents.updated == 0
    assert incident_status() == "resolved"


def test_a_device_seen_100_ns_later_is_applied_and_an_inventory_100_ns_older_is_not(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    def machines(last_seen: str, health: str) -> dict[str, Any]:
        return {"value": [DOC_MACHINE | {"lastSeen": last_seen, "healthStatus": health}]}

    Served(
        httpx_mock,
        MACHINES_URL,
        [
            machines("2018-08-02T14:55:03.7791856Z", "Active"),
            machines("2018-08-02T14:55:03.7791857Z", "Inactive"),
            machines("2018-08-02T14:55:03.7791856Z", "Active"),  # a lagging copy
        ],
    )

    def device() -> tuple[str, str]:
        with sessions() as session:
            row = session.scalars(select(Device)).one()
            assert row.in_inventory
            return row.health_status, str(row.last_seen_stamp)

    sync_inventory(sessions, tenant, connector, POLLED)
    assert device() == ("active", "2018-08-02T14:55:03.7791856Z")
    sync_inventory(sessions, tenant, connector, POLLED)
    assert device() == ("inactive", "2018-08-02T14:55:03.7791857Z")
    sync_inventory(sessions, tenant, connector, POLLED)
    assert device() == ("inactive", "2018-08-02T14:55:03.7791857Z")


OUT_OF_RANGE = [
    "0001-01-01T00:00:00+09:00",  # .NET's "no date" written with Tokyo's offset
    "9999-12-31T23:59:59.9999999-05:00",  # "never", written with New York's
]


@pytest.mark.parametrize("edge", OUT_OF_RANGE)
def test_a_stamp_outside_the_calendar_in_utc_is_refused_as_a_value_error(edge: str):
    with pytest.raises(ValueError, match=re.escape(edge) + ".*out of range"):
        Stamp.from_iso(edge)


@pytest.mark.parametrize("field", ["createdDateTime", "lastUpdateDateTime"])
@pytest.mark.parametrize("edge", OUT_OF_RANGE)
def test_an_alert_with_an_out_of_range_stamp_is_quarantined_and_the_rest_of_the_page_stored(
    sessions, tenant, connector, httpx_mock: HTTPXMock, field: str, edge: str
):
    odd = DOC_ALERT | {"id": "da-edge", "incidentId": None, field: edge}
    Served(httpx_mock, ALERTS_URL, [graph_list([odd, DOC_ALERT | {"incidentId": None}])] * 2)

    for _ in range(2):  # the next poll too: the odd alert never stops the tenant's polling
        assert ingest_tenant(sessions, tenant, connector, now=POLLED).quarantined == 1

    with sessions() as session:
        assert list(session.scalars(select(Alert.source_id))) == [DOC_ALERT["id"]]
        [kept] = session.scalars(select(QuarantinedRecord)).all()
    assert (kept.source_id, kept.times_seen) == ("da-edge", 2)
    assert field in kept.reason and "out of range" in kept.reason


def test_a_cycraft_alert_with_an_out_of_range_stamp_is_one_rejected_record():
    alert = cycraft_payload("cycraft__alerts_page1.json")["data"][0]
    with pytest.raises(Unmappable, match="out of range"):
        CyCraftAdapter.map_alert(alert | {"created_at": "0001-01-01T00:00:00+08:00"})


def test_an_inventory_copy_without_last_seen_keeps_the_stored_one_and_applies_the_rest(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    seen = {"firstSeen": DOC_MACHINE["firstSeen"], "lastSeen": DOC_MACHINE["lastSeen"]}
    Served(
        httpx_mock,
        MACHINES_URL,
        [
            {"value": [DOC_MACHINE | seen | {"healthStatus": "Active"}]},
            {
                "value": [
                    DOC_MACHINE | {"firstSeen": None, "lastSeen": None, "healthStatus": "Inactive"}
                ]
            },
        ],
    )

    sync_inventory(sessions, tenant, connector, POLLED)
    sync_inventory(sessions, tenant, connector, POLLED)

    with sessions() as session:
        row = session.scalars(select(Device)).one()
        assert row.health_status == "inactive"
        assert (str(row.last_seen_stamp), row.last_seen) == (
            seen["lastSeen"],
            Stamp.from_iso(seen["lastSeen"]).datetime,
        )
        assert row.first_seen == Stamp.from_iso(seen["firstSeen"]).datetime


def test_the_cursor_keeps_the_seventh_digit_and_the_next_poll_asks_from_it(
    sessions, tenant, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    fake_sign_in(httpx_mock)
    connector = make_connector(monkeypatch, tmp_path, overlap_seconds=0)
    alerts = Served(
        httpx_mock,
        ALERTS_URL,
        [
            graph_list([alert_version("2021-05-02T14:19:01.3266667Z", "new")]),
            graph_list([alert_version("2021-05-02T14:19:01.3266668Z", "resolved")]),
            graph_list([]),
        ],
    )
    try:
        for _ in range(3):
            ingest_tenant(sessions, tenant, connector, now=POLLED)
    finally:
        connector.close()

    filters = [r.url.params.get("$filter") for r in alerts.requests]
    assert filters == [
        None,
        "lastUpdateDateTime ge 2021-05-02T14:19:01.3266667Z",
        "lastUpdateDateTime ge 2021-05-02T14:19:01.3266668Z",
    ]
    assert stored_alert(sessions).status == "resolved"


def test_two_changes_within_one_microsecond_in_the_sandbox_both_reach_the_store(
    tmp_path: Path, now: datetime, database_url: str
):
    # The sandbox's clock stands still, so both changes happen at the same instant: like
    # Graph, it stamps the second one 100 ns after the first.
    world = SandboxWorld(seed=11, tenants=1, alert_interval_seconds=3600, clock=lambda: now)
    server = SandboxServer(world, host="127.0.0.1", port=0, state_dir=tmp_path / "sandbox")
    server.start()
    try:
        config = sandbox_config(tmp_path, server, database_url, companies=1)
        tenant = SAMPLE_TENANTS[0].tenant_id
        cli = CliRunner()
        assert cli.invoke(main, ["--config", str(config), "db", "upgrade"]).exit_code == 0
        [alert_id] = world.add_alerts(tenant, "ransomware", count=1)
        first = world.update_alert(tenant, alert_id, {"status": "inProgress"})
        assert cli.invoke(main, ["--config", str(config), "poll"]).exit_code == 0
        second = world.update_alert(tenant, alert_id, {"status": "resolved"})
        assert cli.invoke(main, ["--config", str(config), "poll"]).exit_code == 0
    finally:
        server.stop()

    stamps = [Stamp.from_iso(a["lastUpdateDateTime"]) for a in (first, second)]
    assert stamps[1].ticks - stamps[0].ticks == 1
    assert stamps[0].datetime == stamps[1].datetime  # equal to the microsecond
    with make_sessions(make_engine(database_url))() as session:
        row = session.scalars(select(Alert).where(Alert.source_id == alert_id)).one()
    assert (row.status, row.last_update_stamp) == ("resolved", stamps[1])


@pytest.mark.parametrize(
    ("updated_at", "exact"),
    [
        ("2024-05-01T03:01:12.1234567Z", "2024-05-01T03:01:12.1234567Z"),
        ("2024-05-01T11:01:12.1234567+08:00", "2024-05-01T03:01:12.1234567Z"),  # Taipei
        ("2024-05-01T03:01:12.123456789Z", "2024-05-01T03:01:12.1234567Z"),  # ns: cut, not up
        ("2024-05-01T03:01:12.345+00:00", "2024-05-01T03:01:12.3450000Z"),
        (1714532472.1234567, "2024-05-01T03:01:12.1234567Z"),  # epoch seconds with a fraction
        (1714532472123, "2024-05-01T03:01:12.1230000Z"),  # epoch milliseconds
    ],
)
def test_cycraft_stamps_keep_what_it_sends_down_to_the_100_ns(updated_at: Any, exact: str):
    alert = cycraft_payload("cycraft__alerts_page1.json")["data"][0]
    record = CyCraftAdapter.map_alert(alert | {"updated_at": updated_at})
    assert record.last_update_at.iso() == exact
