"""Defender connector: Graph alerts and incidents, cursor filter, nextLink paging, bad records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import AlertRecord, DeviceRef
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.errors import SchemaDriftError, Unmappable
from edrtrial.timeutil import Stamp

from test_defender_support import (
    ALERTS_URL,
    INCIDENTS_URL,
    TENANT,
    fake_sign_in,
    graph_list,
    make_connector,
    payload,
)

DOC_ALERT = payload("graph__list_alerts_v2.json")["value"][0]
# A single GET answers the entity itself, with its own context.
DOC_INCIDENT = payload("graph__list_incidents.json")["value"][0] | {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/incidents/$entity"
}


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def _alerts(connector: DefenderForBusinessConnector, since: Stamp | None) -> list[AlertRecord]:
    return [record for page in connector.fetch_alerts(since) for record in page.records]


def test_documented_alert_is_mapped(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=payload("graph__list_alerts_v2.json")
    )

    [alert] = _alerts(connector, None)

    assert alert.source_id == "da637551227677560813_-961444813"
    assert alert.title == "Suspicious execution of hidden file"
    assert alert.severity == "low"
    assert alert.status == "new"
    assert alert.incident_source_id == "28282"
    assert alert.category == "defenseevasion"
    assert alert.detection_source == "antivirus"
    assert alert.service_source == "microsoftdefenderforendpoint"
    assert alert.mitre_techniques == ("T1564.001",)
    assert alert.created_at == datetime(2021, 4, 27, 12, 19, 27, 721130, tzinfo=UTC)
    assert alert.last_update_at == Stamp.from_iso("2021-05-02T14:19:01.3266667Z")  # all 7 digits
    # Only the deviceEvidence names a device; file/process/registry evidence is tolerated.
    assert alert.devices == (DeviceRef("73e7e2de709dff64ef64b1d0c30e67fab63279db", "tempDns"),)
    assert alert.raw["systemTags"] == ["Defender Experts"]  # unknown fields survive


def test_cursor_filter_goes_back_by_the_overlap_in_z_format_to_the_100_ns(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params={
            "$top": "100",
            "$filter": "lastUpdateDateTime ge 2024-05-01T02:58:00.1234567Z",
        },
        json=payload("graph__list_alerts_v2.json"),
    )

    assert len(_alerts(connector, Stamp.from_iso("2024-05-01T03:00:00.1234567Z"))) == 1


def test_next_link_is_followed_verbatim_across_pages(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    next_link = f"{ALERTS_URL}?$top=100&$skiptoken=d2c38f3e-page2"
    second = DOC_ALERT | {"id": "da637551227677560813_-961444999"}
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=graph_list([DOC_ALERT], next_link)
    )
    httpx_mock.add_response(url=next_link, json=graph_list([second]))

    pages = list(connector.fetch_alerts(None))

    assert [[a.source_id for a in page.records] for page in pages] == [
        ["da637551227677560813_-961444813"],
        ["da637551227677560813_-961444999"],
    ]
    assert str(httpx_mock.get_requests()[-1].url) == next_link


def test_a_next_link_seen_twice_stops_with_schema_drift(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    loop = f"{ALERTS_URL}?$skiptoken=again"
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=graph_list([DOC_ALERT], loop)
    )
    httpx_mock.add_response(url=loop, json=graph_list([DOC_ALERT], loop))

    with pytest.raises(SchemaDriftError, match="paging loop"):
        list(connector.fetch_alerts(None))


def test_a_next_link_to_another_host_is_refused(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    elsewhere = "https://graph.example.net/v1.0/security/alerts_v2?$skiptoken=x"
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=graph_list([DOC_ALERT], elsewhere)
    )

    with pytest.raises(SchemaDriftError, match="outside"):
        list(connector.fetch_alerts(None))
    assert all(r.url.host != "graph.example.net" for r in httpx_mock.get_requests())


def test_one_bad_record_is_rejected_with_its_reason_and_the_page_survives(
    httpx_mock: HTTPXMock,
    connector: DefenderForBusinessConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = DOC_ALERT | {"id": "da637551227677560813_-000000001", "lastUpdateDateTime": "yesterday"}
    nameless = {key: value for key, value in DOC_ALERT.items() if key != "id"}
    good = DOC_ALERT | {"id": "da637551227677560813_-961444999"}
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params={"$top": "100"},
        json=graph_list([DOC_ALERT, bad, nameless, "not an object", good]),
    )
    caplog.set_level(logging.WARNING)

    [batch] = list(connector.fetch_alerts(None))

    assert [a.source_id for a in batch.records] == [DOC_ALERT["id"], good["id"]]
    assert not batch.complete
    timestamp, no_id, not_object = batch.rejected
    assert (timestamp.kind, timestamp.source_id) == ("alert", bad["id"])
    assert "lastUpdateDateTime" in timestamp.reason
    assert timestamp.raw == bad  # kept as sent, for the quarantine
    assert (no_id.source_id, no_id.reason) == ("", "no id")
    assert no_id.raw == nameless
    assert (not_object.source_id, not_object.reason) == ("", "not a JSON object (str)")
    assert not_object.raw == {"value": "'not an object'"}
    set_aside = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 3
    assert all(TENANT in line for line in set_aside)


def test_the_public_contract_maps_an_alert_as_polling_does_without_a_tenant(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=payload("graph__list_alerts_v2.json")
    )
    [polled] = _alerts(connector, None)

    assert DefenderForBusinessConnector.map_alert(DOC_ALERT) == polled
    with pytest.raises(Unmappable, match="^no lastUpdateDateTime$"):
        DefenderForBusinessConnector.map_alert(DOC_ALERT | {"lastUpdateDateTime": None})
    with pytest.raises(Unmappable, match="^lastUpdateDateTime: "):
        DefenderForBusinessConnector.map_alert(DOC_ALERT | {"lastUpdateDateTime": "yesterday"})
    with pytest.raises(Unmappable, match=r"^not a JSON object \(list\)$"):
        DefenderForBusinessConnector.map_alert([DOC_ALERT])


def test_alert_payloads_reads_pages_lists_single_alerts_and_expanded_incidents() -> None:
    page = payload("graph__list_alerts_v2.json")
    incidents = payload("graph__list_incidents_expand_alerts.json")
    expanded = [alert for incident in incidents["value"] for alert in incident["alerts"]]
    payloads = DefenderForBusinessConnector.alert_payloads

    assert payloads(page) == page["value"]
    assert payloads(page["value"]) == page["value"]
    assert payloads(DOC_ALERT) == [DOC_ALERT]
    assert expanded and payloads(incidents) == expanded
    assert payloads("not json object") == ["not json object"]  # map_alert then says why


def test_documented_incident_with_pascal_case_enums_is_fetched_by_id(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(url=f"{INCIDENTS_URL}/2972395", json=DOC_INCIDENT)

    batch = connector.fetch_incidents(["2972395"])

    [incident] = batch.records
    assert batch.rejected == []
    assert incident.source_id == "2972395"
    assert incident.title.startswith("Multi-stage incident involving Initial access")
    assert (incident.severity, incident.status) == ("medium", "active")
    assert incident.created_at == datetime(2021, 8, 13, 8, 43, 35, 553333, tzinfo=UTC)
    assert incident.last_update_at == Stamp.from_iso("2021-09-30T09:35:45.1133333Z")
    assert incident.raw["classification"] == "TruePositive"  # raw stays as sent
    [request] = httpx_mock.get_requests()[-1:]
    assert request.method == "GET"
    assert request.headers["Prefer"] == "include-unknown-enum-members"


def test_incidents_gone_from_the_tenant_are_left_out_and_each_id_is_asked_once(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    expanded = payload("graph__list_incidents_expand_alerts.json")["value"][0]
    other = expanded | {"id": "2972396"}
    httpx_mock.add_response(url=f"{INCIDENTS_URL}/2972396", json=other)
    httpx_mock.add_response(
        url=f"{INCIDENTS_URL}/404404",
        status_code=404,
        json=payload("mde__error_resource_not_found_404.json"),
    )
    httpx_mock.add_response(url=f"{INCIDENTS_URL}/2972395", json=DOC_INCIDENT)

    batch = connector.fetch_incidents(["2972396", "404404", "2972395", "2972396"])

    assert [i.source_id for i in batch.records] == ["2972396", "2972395"]
    assert batch.complete  # a vanished incident is not a rejected one
    assert batch.records[0].raw["alerts"][0]["id"] == "da637551227677560813_-961444813"


def test_an_incident_id_is_escaped_in_the_path(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(url=f"{INCIDENTS_URL}/a%2Fb", status_code=404, json={})

    assert connector.fetch_incidents(["a/b"]).records == []


def test_no_ids_no_requests(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn = make_connector(monkeypatch, tmp_path)

    assert conn.fetch_incidents([]).records == []
    conn.close()
    assert httpx_mock.get_requests() == []


def test_many_incidents_are_listed_by_time_window_not_read_one_by_one(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    since = Stamp.from_iso("2021-09-30T09:00:00Z")
    listed = [DOC_INCIDENT | {"id": str(n)} for n in range(100, 160)]  # 60 incidents, 2 pages
    first = {"value": listed[:50], "@odata.nextLink": f"{INCIDENTS_URL}?$skiptoken=p2"}
    httpx_mock.add_response(
        url=f"{INCIDENTS_URL}?%24top=50&%24filter=lastUpdateDateTime+ge+2021-09-30T08%3A58%3A00.0000000Z",
        json=first,
    )
    httpx_mock.add_response(url=f"{INCIDENTS_URL}?$skiptoken=p2", json={"value": listed[50:]})
    httpx_mock.add_response(url=f"{INCIDENTS_URL}/999", json=DOC_INCIDENT | {"id": "999"})
    wanted = [str(n) for n in range(100, 160, 2)] + ["999"]  # 31 wanted, one not listed

    batch = connector.fetch_incidents(wanted, since=since)

    assert sorted(i.source_id for i in batch.records) == sorted(wanted)
    graph = [r for r in httpx_mock.get_requests() if r.url.host == "graph.microsoft.com"]
    assert len(graph) == 3  # two pages of the list, one GET for the incident it missed
