"""Defender connector: device inventory, machine actions (isolate, reuse), offboarding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import ActionKind, ActionStatus
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.connectors.defender.models import MdeMachineAction
from edrtrial.errors import PermanentError

from test_defender_support import (
    ACTIONS_URL,
    MACHINES_URL,
    fake_sign_in,
    make_connector,
    mde_error,
    mde_list,
    payload,
)

DEVICE = "7b1f4967d9728e5aa3c06a9e617a22a4a5a17378"  # the machineId of the documented action
ISOLATE = payload("mde__machineaction_isolate_resource.json")
FIRST_PAGE = {"$top": "10000", "$skip": "0"}


def _pending_isolate_filter() -> dict[str, str]:
    return FIRST_PAGE | {"$filter": f"machineId eq '{DEVICE}' and type eq 'Isolate'"}


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


@pytest.fixture
def offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def test_documented_machines_are_mapped(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL, match_params=FIRST_PAGE, json=payload("mde__list_machines.json")
    )

    batch = connector.fetch_devices()

    [device] = batch.records
    assert batch.complete

    assert device.source_id == "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
    assert device.name == "mymachine1.contoso.com"
    assert (device.os_platform, device.os_version) == ("Windows10", "1709")
    assert (device.health_status, device.risk_score) == ("active", "low")
    assert device.first_seen == datetime(2018, 8, 2, 14, 55, 3, 779185, tzinfo=UTC)
    assert device.tags == ("test tag 1", "test tag 2")
    assert device.raw["machineTags"] == ["test tag 1", "test tag 2"]


@pytest.mark.parametrize(
    ("sent", "tags"),
    [
        (["vip", 3, None, "server", "vip", " ", {"x": 1}, " server "], ("vip", "server")),
        ("server", ("server",)),  # a lone value where a list was documented
        (None, ()),
        ({"tag": "vip"}, ()),
        (42, ()),
    ],
)
def test_machine_tags_keep_text_only_once_each_in_order(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, sent: object, tags: object
) -> None:
    machines = payload("mde__list_machines.json")
    machines["value"][0]["machineTags"] = sent
    httpx_mock.add_response(url=MACHINES_URL, match_params=FIRST_PAGE, json=machines)

    batch = connector.fetch_devices()

    [device] = batch.records  # an odd tag list never costs the device
    assert batch.complete
    assert device.tags == tags


def test_no_recent_machines_answers_404_which_means_none(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params=FIRST_PAGE,
        status_code=404,
        json=payload("mde__error_resource_not_found_404.json"),
    )

    batch = connector.fetch_devices()

    assert (batch.records, batch.rejected) == ([], [])


def test_a_machine_without_an_id_is_rejected_and_marks_the_inventory_incomplete(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    machines = payload("mde__list_machines.json")
    documented = machines["value"][0]
    nameless = documented | {"id": None}
    machines["value"] = [documented, nameless]
    httpx_mock.add_response(url=MACHINES_URL, match_params=FIRST_PAGE, json=machines)

    batch = connector.fetch_devices()

    assert [d.source_id for d in batch.records] == [documented["id"]]
    [rejected] = batch.rejected
    assert (rejected.kind, rejected.source_id, rejected.reason) == ("device", "", "no id")
    assert rejected.raw == nameless
    assert not batch.complete  # the core must not mark devices absent from this inventory


def test_isolate_posts_the_documented_body_and_maps_the_action(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ACTIONS_URL, match_params=_pending_isolate_filter(), json=mde_list([])
    )
    httpx_mock.add_response(
        url=f"{MACHINES_URL}/{DEVICE}/isolate", method="POST", status_code=201, json=ISOLATE
    )

    result = connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    assert (result.source_action_id, result.status) == (ISOLATE["id"], ActionStatus.SUCCEEDED)
    [post] = httpx_mock.get_requests(method="POST", url=f"{MACHINES_URL}/{DEVICE}/isolate")
    assert json.loads(post.content) == payload("mde__isolate_request.json")
    assert post.headers["Content-Type"] == "application/json"


def test_selective_isolation_when_the_tenant_asks_for_it(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path, isolation_type="Selective")
    httpx_mock.add_response(
        url=ACTIONS_URL, match_params=_pending_isolate_filter(), json=mde_list([])
    )
    httpx_mock.add_response(
        url=f"{MACHINES_URL}/{DEVICE}/isolate",
        method="POST",
        status_code=201,
        json=ISOLATE | {"scope": "Selective", "status": "Pending"},
    )

    conn.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")
    conn.close()

    [post] = httpx_mock.get_requests(method="POST", url=f"{MACHINES_URL}/{DEVICE}/isolate")
    expected = payload("mde__isolate_request.json") | {"IsolationType": "Selective"}
    assert json.loads(post.content) == expected


def test_a_pending_isolate_is_reused_without_posting(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    pending = ISOLATE | {"status": "Pending"}
    older = ISOLATE | {
        "id": "0d2e4e4a-1111-4ab7-9782-d50480024a4e",
        "status": "InProgress",
        "creationDateTimeUtc": "2019-01-01T09:00:00.0000000Z",
    }
    finished = ISOLATE | {"id": "9c1d4e4a-2222-4ab7-9782-d50480024a4e"}  # Succeeded
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=_pending_isolate_filter(),
        json=mde_list([finished, older, pending]),
    )

    result = connector.start_action(DEVICE, ActionKind.ISOLATE, "second request from the desk")

    assert (result.source_action_id, result.status) == (ISOLATE["id"], ActionStatus.PENDING)
    assert httpx_mock.get_requests(method="POST", url=f"{MACHINES_URL}/{DEVICE}/isolate") == []


def test_already_in_progress_is_answered_with_the_pending_action(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ACTIONS_URL, match_params=_pending_isolate_filter(), json=mde_list([])
    )
    httpx_mock.add_response(
        url=f"{MACHINES_URL}/{DEVICE}/isolate",
        method="POST",
        status_code=400,
        json=mde_error("BadRequest", "Action is already in progress"),
    )
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=_pending_isolate_filter(),
        json=mde_list([ISOLATE | {"status": "InProgress"}]),
    )

    result = connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    assert (result.source_action_id, result.status) == (ISOLATE["id"], ActionStatus.IN_PROGRESS)


def test_other_bad_requests_are_permanent_and_quote_microsoft(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=ACTIONS_URL, match_params=_pending_isolate_filter(), json=mde_list([])
    )
    httpx_mock.add_response(
        url=f"{MACHINES_URL}/{DEVICE}/isolate",
        method="POST",
        status_code=400,
        json=payload("mde__error_invalid_request_body_400.json"),
    )

    with pytest.raises(PermanentError) as caught:
        connector.start_action(DEVICE, ActionKind.ISOLATE, "Isolate machine due to alert 1234")

    text = str(caught.value)
    assert "InvalidRequestBody" in text
    assert "Request body is incorrect" in text
    assert "1fa66c0f-18bd-4133-b378-36d76f3a2ba0" in text  # the target to quote to Microsoft


@pytest.mark.parametrize(
    ("kind", "endpoint", "mde_type", "extra", "status_code"),
    [
        (ActionKind.RELEASE, "unisolate", "Unisolate", {}, 201),
        (ActionKind.AV_SCAN, "runAntiVirusScan", "RunAntiVirusScan", {"ScanType": "Quick"}, 201),
        (ActionKind.OFFBOARD, "offboard", "Offboard", {}, 200),  # docs: "200 - Created"
    ],
)
def test_each_action_posts_to_its_endpoint_and_accepts_any_2xx(
    httpx_mock: HTTPXMock,
    connector: DefenderForBusinessConnector,
    kind: ActionKind,
    endpoint: str,
    mde_type: str,
    extra: dict[str, str],
    status_code: int,
) -> None:
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=FIRST_PAGE | {"$filter": f"machineId eq '{DEVICE}' and type eq '{mde_type}'"},
        json=mde_list([]),
    )
    answer = ISOLATE | {"type": mde_type, "status": "Pending"}
    httpx_mock.add_response(
        url=f"{MACHINES_URL}/{DEVICE}/{endpoint}",
        method="POST",
        status_code=status_code,
        json=answer,
    )

    result = connector.start_action(DEVICE, kind, "Offboard machine by automation")

    assert result.status is ActionStatus.PENDING
    [post] = httpx_mock.get_requests(method="POST", url=f"{MACHINES_URL}/{DEVICE}/{endpoint}")
    assert json.loads(post.content) == {"Comment": "Offboard machine by automation", **extra}


def test_action_status_reads_the_machine_action(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_response(
        url=f"{ACTIONS_URL}/{ISOLATE['id']}", json=payload("mde__get_machineaction_by_id.json")
    )

    result = connector.action_status(ISOLATE["id"])

    assert (result.source_action_id, result.status) == (ISOLATE["id"], ActionStatus.SUCCEEDED)
    assert result.status.terminal


def test_an_action_needs_a_comment(offline: DefenderForBusinessConnector) -> None:
    with pytest.raises(PermanentError, match="comment"):
        offline.start_action(DEVICE, ActionKind.OFFBOARD, "  ")


def test_both_documented_last_update_field_names_are_read() -> None:
    listed = payload("mde__list_machineactions.json")["value"][0]  # lastUpdateTimeUtc
    single = payload("mde__get_machineaction_by_id.json")  # lastUpdateDateTimeUtc

    assert MdeMachineAction.model_validate(listed).last_update_date_time_utc == datetime(
        2018, 12, 4, 12, 45, 25, 404912, tzinfo=UTC
    )
    assert MdeMachineAction.model_validate(single).last_update_date_time_utc == datetime(
        2019, 1, 2, 14, 40, 44, 659626, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("Windows10", True),
        ("Windows11", True),
        ("WindowsServer2019", True),
        ("WindowsServer2022", True),
        ("Windows Server 2025", True),
        ("WindowsServer2016", False),
        ("WindowsServer2012R2", False),
        ("Windows7", False),
        ("macOS", False),
        ("Linux", False),
        ("iOS", False),
        ("Android", False),
        ("", False),
    ],
)
def test_can_offboard_only_supported_windows(
    offline: DefenderForBusinessConnector, platform: str, expected: bool
) -> None:
    assert offline.can_offboard(platform) is expected
