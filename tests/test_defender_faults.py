"""Defender connector against a misbehaving tenant: throttling, 5xx, timeouts, bad pages, budgets.

Every answer is a documented payload (or one cut short / reshaped from it); time is fake, so
the waits are asserted rather than slept.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import ActionKind, AlertRecord
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.errors import AuthError, SchemaDriftError, TransientError

from test_defender_support import (
    ACTIONS_URL,
    ALERTS_URL,
    CLIENT_ID,
    GRAPH_SCOPE,
    MACHINES_URL,
    TENANT,
    TOKEN_URL,
    FakeClock,
    add_discovery,
    add_instance_discovery,
    fake_sign_in,
    fixture_text,
    graph_list,
    make_connector,
    mde_list,
    payload,
    token_form,
    token_response,
)

DOC_ALERT = payload("graph__list_alerts_v2.json")["value"][0]
TOP = {"$top": "100"}
FIRST_PAGE = {"$top": "10000", "$skip": "0"}
DEVICE = "7b1f4967d9728e5aa3c06a9e617a22a4a5a17378"
ISOLATE = payload("mde__machineaction_isolate_resource.json")
OPEN_ISOLATES = FIRST_PAGE | {"$filter": f"machineId eq '{DEVICE}' and type eq 'Isolate'"}
THROTTLED = payload("graph__error_429_too_many_requests.json")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path, clock)
    yield conn
    conn.close()


def _alerts(connector: DefenderForBusinessConnector) -> list[AlertRecord]:
    return [record for page in connector.fetch_alerts(None) for record in page.records]


def _throttle(httpx_mock: HTTPXMock, retry_after: str, **match: Any) -> None:
    httpx_mock.add_response(
        status_code=429, headers={"Retry-After": retry_after}, json=THROTTLED, **match
    )


# --- throttling ------------------------------------------------------------------------------


def test_a_429_storm_is_waited_out_as_retry_after_says(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    _throttle(httpx_mock, "2", url=ALERTS_URL, match_params=TOP)
    _throttle(httpx_mock, "3", url=ALERTS_URL, match_params=TOP)
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=payload("graph__list_alerts_v2.json")
    )

    [alert] = _alerts(connector)

    assert alert.source_id == DOC_ALERT["id"]
    assert clock.sleeps == [2.0, 3.0]


def test_a_429_storm_that_outlasts_three_tries_is_transient(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    for _ in range(3):
        _throttle(httpx_mock, "1", url=ALERTS_URL, match_params=TOP)

    with pytest.raises(TransientError) as caught:
        _alerts(connector)

    assert caught.value.retry_after == 1.0
    assert clock.sleeps == [1.0, 1.0]


def test_a_long_retry_after_is_handed_to_the_scheduler_and_holds_the_tenant(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    _throttle(httpx_mock, "120", url=ALERTS_URL, match_params=TOP)

    with pytest.raises(TransientError) as caught:
        _alerts(connector)
    assert caught.value.retry_after == 120.0
    assert clock.sleeps == []

    clock.advance(20)
    with pytest.raises(TransientError) as again:  # no second call while Microsoft said wait
        _alerts(connector)
    assert again.value.retry_after == 100.0
    assert len(httpx_mock.get_requests(url=ALERTS_URL, match_params=TOP)) == 1


# --- server errors and the network -----------------------------------------------------------


def test_server_errors_then_success_back_off_exponentially(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, status_code=500)
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, status_code=503)
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=payload("graph__list_alerts_v2.json")
    )
    clock.jitter = 0.5

    assert len(_alerts(connector)) == 1
    assert clock.sleeps == [0.75, 1.5]  # 0.5 s doubling, each plus half again of jitter


def test_backoff_never_exceeds_max_wait(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, status_code=500, is_reusable=True)
    conn = make_connector(monkeypatch, tmp_path, clock, max_wait_seconds=0.6)
    clock.jitter = 0.99

    with pytest.raises(TransientError):
        _alerts(conn)
    conn.close()

    assert clock.sleeps == [0.6, 0.6]


def test_timeouts_then_success(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    for failure in (httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("timed out")):
        httpx_mock.add_exception(failure, url=MACHINES_URL, match_params=FIRST_PAGE)
    httpx_mock.add_response(
        url=MACHINES_URL, match_params=FIRST_PAGE, json=payload("mde__list_machines.json")
    )

    assert len(connector.fetch_devices().records) == 1
    assert clock.sleeps == [0.5, 1.0]


def test_a_post_that_may_have_reached_microsoft_is_not_sent_twice(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    # An isolate that timed out or hit a 5xx may have started: the core's next try first
    # lists the pending actions and reuses one, instead of stacking a second isolate.
    isolate_url = f"{MACHINES_URL}/{DEVICE}/isolate"
    httpx_mock.add_response(
        url=ACTIONS_URL, match_params=OPEN_ISOLATES, json=mde_list([]), is_reusable=True
    )
    httpx_mock.add_exception(httpx.ReadTimeout("read timed out"), url=isolate_url, method="POST")
    httpx_mock.add_response(url=isolate_url, method="POST", status_code=500)

    for _ in range(2):
        with pytest.raises(TransientError):
            connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    assert len(httpx_mock.get_requests(url=isolate_url, method="POST")) == 2  # one per try
    assert clock.sleeps == []


def test_a_post_refused_unprocessed_is_sent_again(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, clock: FakeClock
) -> None:
    isolate_url = f"{MACHINES_URL}/{DEVICE}/isolate"
    httpx_mock.add_response(url=ACTIONS_URL, match_params=OPEN_ISOLATES, json=mde_list([]))
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=isolate_url)
    _throttle(httpx_mock, "4", url=isolate_url, method="POST")
    httpx_mock.add_response(url=isolate_url, method="POST", status_code=201, json=ISOLATE)

    result = connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    assert result.source_action_id == ISOLATE["id"]
    assert clock.sleeps == [0.5, 4.0]


# --- bodies that are not what was documented -------------------------------------------------


def test_a_truncated_second_page_is_schema_drift_naming_its_url(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    next_link = f"{ALERTS_URL}?$top=100&$skiptoken=d2c38f3e-page2"
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=graph_list([DOC_ALERT], next_link)
    )
    whole = fixture_text("graph__list_alerts_v2.json")
    httpx_mock.add_response(url=next_link, text=whole[: len(whole) * 2 // 3], is_reusable=True)

    pages = connector.fetch_alerts(None)
    assert [a.source_id for a in next(pages).records] == [DOC_ALERT["id"]]
    with pytest.raises(SchemaDriftError) as caught:
        next(pages)

    assert "skiptoken=d2c38f3e-page2" in str(caught.value)
    assert "not JSON" in str(caught.value)
    assert TENANT in str(caught.value)


def test_a_json_array_instead_of_an_object_is_schema_drift(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, json=[DOC_ALERT], is_reusable=True)

    with pytest.raises(SchemaDriftError, match="expected an object"):
        _alerts(connector)


def test_the_same_alert_on_two_pages_is_returned_twice_for_the_store_to_dedupe(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    next_link = f"{ALERTS_URL}?$top=100&$skiptoken=page2"
    updated = DOC_ALERT | {"lastUpdateDateTime": "2021-05-02T15:00:00.0000000Z"}
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=graph_list([DOC_ALERT], next_link)
    )
    httpx_mock.add_response(url=next_link, json=graph_list([updated]))

    alerts = _alerts(connector)

    assert [a.source_id for a in alerts] == [DOC_ALERT["id"], DOC_ALERT["id"]]
    assert alerts[0].last_update_at < alerts[1].last_update_at


def test_a_looping_next_link_stops_with_schema_drift(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    first = f"{ALERTS_URL}?$skiptoken=a"
    second = f"{ALERTS_URL}?$skiptoken=b"
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, json=graph_list([DOC_ALERT], first))
    httpx_mock.add_response(url=first, json=graph_list([DOC_ALERT], second))
    httpx_mock.add_response(url=second, json=graph_list([DOC_ALERT], first))

    with pytest.raises(SchemaDriftError, match="paging loop"):
        _alerts(connector)


# --- tolerant parsing ------------------------------------------------------------------------


def test_pascal_and_camel_case_enums_read_the_same(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    pascal = DOC_ALERT | {
        "id": "pascal",
        "status": "InProgress",
        "severity": "High",
        "classification": "TruePositive",
        "serviceSource": "MicrosoftDefenderForEndpoint",
    }
    camel = DOC_ALERT | {
        "id": "camel",
        "status": "inProgress",
        "severity": "high",
        "classification": "truePositive",
        "serviceSource": "microsoftDefenderForEndpoint",
    }
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, json=graph_list([pascal, camel]))

    first, second = _alerts(connector)

    read = [(a.status, a.severity, a.service_source) for a in (first, second)]
    assert read == [("inprogress", "high", "microsoftdefenderforendpoint")] * 2
    assert (first.raw["status"], second.raw["status"]) == ("InProgress", "inProgress")


def test_unknown_enum_values_and_fields_are_kept_not_refused(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    novel = DOC_ALERT | {
        "severity": "Critical",
        "status": "awaitingAction",
        "detectionSource": "microsoftDefenderForAiServices",
        "productName": "Microsoft Defender for Endpoint",
    }
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, json=graph_list([novel]))

    [alert] = _alerts(connector)

    assert (alert.severity, alert.status) == ("critical", "awaitingaction")
    assert alert.detection_source == "microsoftdefenderforaiservices"
    assert alert.raw["productName"] == "Microsoft Defender for Endpoint"


def test_absent_and_null_fields_are_alike(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    required = {"id", "lastUpdateDateTime"}
    omitted = {k: v for k, v in DOC_ALERT.items() if k in required} | {"id": "omitted"}
    nulled = {k: (v if k in required else None) for k, v in DOC_ALERT.items()} | {"id": "nulled"}
    device = next(e for e in DOC_ALERT["evidence"] if e["@odata.type"].endswith("deviceEvidence"))
    odd_evidence = DOC_ALERT | {"id": "odd", "evidence": [None, "x", copy.deepcopy(device)]}
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=graph_list([omitted, nulled, odd_evidence])
    )

    [batch] = list(connector.fetch_alerts(None))

    assert batch.rejected == []
    first, second, third = batch.records
    for alert in (first, second):
        assert (alert.title, alert.severity, alert.status) == ("", "unknown", "unknown")
        assert (alert.devices, alert.mitre_techniques, alert.incident_source_id) == ((), (), None)
    assert [d.source_id for d in third.devices] == [device["mdeDeviceId"]]


# --- sign-in ---------------------------------------------------------------------------------


def test_consent_revoked_mid_run_is_an_auth_error_with_the_consent_link(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_discovery(httpx_mock)
    short_lived = token_response(GRAPH_SCOPE) | {"expires_in": 60}
    refusal = payload("entra__error_invalid_client_7000215.json") | {
        "error": "invalid_grant",
        "error_description": f"AADSTS65001: The user or administrator has not consented to use "
        f"the application with ID '{CLIENT_ID}'. Send an interactive authorization request "
        "for this user and resource.",
        "error_codes": [65001],
    }
    answers = iter([httpx.Response(200, json=short_lived), httpx.Response(400, json=refusal)])

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        assert token_form(request)["client_id"] == CLIENT_ID
        return next(answers)

    httpx_mock.add_callback(token_endpoint, url=TOKEN_URL, method="POST", is_reusable=True)
    add_instance_discovery(httpx_mock)
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=payload("graph__list_alerts_v2.json")
    )
    conn = make_connector(monkeypatch, tmp_path)

    assert len(_alerts(conn)) == 1  # the first token works
    with pytest.raises(AuthError) as caught:  # it nears expiry; the new one is refused
        _alerts(conn)
    conn.close()

    assert "AADSTS65001" in str(caught.value)
    action = caught.value.operator_action
    assert f"{TENANT}/adminconsent?client_id={CLIENT_ID}" in action
    assert "Assets > Devices" in action
    assert len(httpx_mock.get_requests(url=TOKEN_URL)) == 2


# --- client-side budgets ---------------------------------------------------------------------


def test_a_spent_budget_waits_when_the_wait_is_short(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params=FIRST_PAGE,
        json=payload("mde__list_machines.json"),
        is_reusable=True,
    )
    conn = make_connector(monkeypatch, tmp_path, clock, mde_calls_per_minute=2)

    conn.fetch_devices()
    clock.advance(55)
    conn.fetch_devices()
    conn.fetch_devices()  # the first call leaves the minute 5 s from now: worth waiting
    conn.close()

    assert clock.sleeps == [5.0]
    assert len(httpx_mock.get_requests(url=MACHINES_URL, match_params=FIRST_PAGE)) == 3


def test_a_spent_budget_is_transient_when_the_wait_is_long(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params=FIRST_PAGE,
        json=payload("mde__list_machines.json"),
        is_reusable=True,
    )
    httpx_mock.add_response(
        url=f"{ACTIONS_URL}/{ISOLATE['id']}", json=payload("mde__get_machineaction_by_id.json")
    )
    conn = make_connector(monkeypatch, tmp_path, clock, mde_calls_per_minute=2)

    conn.fetch_devices()
    conn.fetch_devices()
    with pytest.raises(TransientError) as caught:
        conn.fetch_devices()
    conn.action_status(ISOLATE["id"])  # another MDE API has a budget of its own
    conn.close()

    assert caught.value.retry_after == 60.0
    assert "budget" in str(caught.value)
    assert clock.sleeps == []
    assert len(httpx_mock.get_requests(url=MACHINES_URL, match_params=FIRST_PAGE)) == 2


def test_each_connector_instance_has_its_own_budget(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params=TOP,
        json=payload("graph__list_alerts_v2.json"),
        is_reusable=True,
    )
    add_discovery(httpx_mock)  # each instance signs in on its own
    first = make_connector(monkeypatch, tmp_path, graph_calls_per_minute=1)
    second = make_connector(monkeypatch, tmp_path, graph_calls_per_minute=1)

    _alerts(first)
    _alerts(second)  # another tenant's instance: not charged for the first one's call
    with pytest.raises(TransientError):
        _alerts(first)
    first.close()
    second.close()


def test_throttled_calls_send_the_documented_bodies_again_unchanged(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    isolate_url = f"{MACHINES_URL}/{DEVICE}/isolate"
    httpx_mock.add_response(url=ACTIONS_URL, match_params=OPEN_ISOLATES, json=mde_list([]))
    _throttle(httpx_mock, "1", url=isolate_url, method="POST")
    httpx_mock.add_response(url=isolate_url, method="POST", status_code=201, json=ISOLATE)

    connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    bodies = [json.loads(r.content) for r in httpx_mock.get_requests(url=isolate_url)]
    assert bodies == [payload("mde__isolate_request.json")] * 2
