"""Defender connector: a send that got no answer is told apart from a refusal, and the device's
machine actions are listed so the core can find the action such a send created."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import ActionKind, ActionStatus, Capability
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.errors import (
    ApiRefused,
    OutcomeUnknown,
    ResourceNotFound,
    TransientError,
)

from test_defender_support import (
    ACTIONS_URL,
    CLIENT_ID,
    MACHINES_URL,
    fake_sign_in,
    make_connector,
    mde_error,
    mde_list,
    payload,
)

ISOLATE = payload("mde__get_machineaction_by_id.json")  # Isolate, created 2019-01-02T14:39:38Z
DEVICE = ISOLATE["machineId"]
FIRST_PAGE = {"$top": "10000", "$skip": "0"}
SINCE = datetime(2019, 1, 2, 14, 30, tzinfo=UTC)
POST_URL = f"{MACHINES_URL}/{DEVICE}/isolate"


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def ours(**changes: Any) -> dict[str, Any]:
    """The documented Isolate action as our app requests it (the requestor is its client id)."""
    return ISOLATE | {"requestor": CLIENT_ID} | changes


def test_find_actions_asks_for_this_apps_actions_of_the_type_since_and_checks_them(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    documented_filter = (
        f"machineId eq '{DEVICE}' and type eq 'Isolate' and requestor eq '{CLIENT_ID}' and "
        "creationDateTimeUtc ge 2019-01-02T14:30:00.0000000Z"
    )
    listing = [
        ours(id="9a0e6c55-5d7b-4c1e-9d55-0f0c1f2a3b4c", status="Pending"),
        ours(),
        # A server that ignored part of the filter: none of these is our send's action.
        ours(id="11111111-1111-4111-8111-111111111111", requestor="Analyst@contoso.com"),
        ours(id="22222222-2222-4222-8222-222222222222", creationDateTimeUtc="2019-01-01T00:00:00Z"),
        ours(id="33333333-3333-4333-8333-333333333333", type="Unisolate"),
        ours(id="44444444-4444-4444-8444-444444444444", machineId="another-device"),
    ]
    listing[0]["creationDateTimeUtc"] = "2019-01-02T14:41:00.0000001Z"
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=FIRST_PAGE | {"$filter": documented_filter},
        json=mde_list(listing),
    )

    found = connector.find_actions(DEVICE, ActionKind.ISOLATE, SINCE)

    assert [(a.source_action_id, a.status) for a in found] == [
        (ISOLATE["id"], ActionStatus.SUCCEEDED),
        ("9a0e6c55-5d7b-4c1e-9d55-0f0c1f2a3b4c", ActionStatus.PENDING),
    ]  # oldest first
    assert found[0].created_at == datetime(2019, 1, 2, 14, 39, 38, 226228, tzinfo=UTC)
    assert Capability.FIND_ACTIONS in connector.capabilities


def test_an_offboard_naming_no_device_is_found_by_the_marker_of_its_send(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    """Defender has shown Offboard actions with machineId null: the device cannot be in the
    filter, and such an action counts only if its comment carries the send's marker."""
    offboard = ours(type="Offboard", machineId=None, status="Pending")
    offboard["requestorComment"] = "edrtrial: trial ended, offboarding pc-1 (cli:sato, action #7)"
    someone_elses = offboard | {
        "id": "55555555-5555-4555-8555-555555555555",
        "requestorComment": "edrtrial: trial ended, offboarding pc-2 (cli:sato, action #8)",
    }
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=FIRST_PAGE
        | {
            "$filter": f"type eq 'Offboard' and requestor eq '{CLIENT_ID}' and "
            "creationDateTimeUtc ge 2019-01-02T14:30:00.0000000Z"
        },
        json=mde_list([offboard, someone_elses]),
    )

    found = connector.find_actions(DEVICE, ActionKind.OFFBOARD, SINCE, "action #7")

    assert [(a.source_action_id, a.comment) for a in found] == [
        (offboard["id"], offboard["requestorComment"])
    ]


def _no_pending(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=ACTIONS_URL,
        match_params=FIRST_PAGE | {"$filter": f"machineId eq '{DEVICE}' and type eq 'Isolate'"},
        json=mde_list([]),
    )


DOUBTFUL: dict[str, dict[str, Any]] = {
    "504 gateway timeout": {"status_code": 504, "json": mde_error("GatewayTimeout", "timeout")},
    "500 server error": {"status_code": 500, "json": mde_error("InternalServerError", "oops")},
    "success that is not JSON": {"status_code": 201, "text": '{"id": "5382f7ea-'},
    "success without an action id": {"status_code": 201, "json": {"status": "Pending"}},
}


@pytest.mark.parametrize("answer", list(DOUBTFUL))
def test_an_answer_that_leaves_the_action_open_is_outcome_unknown_and_never_resent(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, answer: str
) -> None:
    _no_pending(httpx_mock)
    httpx_mock.add_response(url=POST_URL, method="POST", **DOUBTFUL[answer])

    with pytest.raises(OutcomeUnknown):
        connector.start_action(DEVICE, ActionKind.ISOLATE, "edrtrial: isolate pc-1")

    assert len(httpx_mock.get_requests(method="POST", url=POST_URL)) == 1


@pytest.mark.parametrize(
    "lost",
    [httpx.ReadTimeout("read timed out"), httpx.RemoteProtocolError("Server disconnected")],
    ids=["timeout", "dropped connection"],
)
def test_a_post_lost_after_it_was_sent_is_outcome_unknown_and_never_resent(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, lost: Exception
) -> None:
    _no_pending(httpx_mock)
    httpx_mock.add_exception(lost, url=POST_URL, method="POST")

    with pytest.raises(OutcomeUnknown, match=f"POST {POST_URL}"):
        connector.start_action(DEVICE, ActionKind.ISOLATE, "edrtrial: isolate pc-1")

    assert len(httpx_mock.get_requests(method="POST", url=POST_URL)) == 1


REFUSED: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "400 invalid body": (
        {"status_code": 400, "json": payload("mde__error_invalid_request_body_400.json")},
        ApiRefused,
    ),
    "404 unknown machine": (
        {"status_code": 404, "json": payload("mde__error_resource_not_found_404.json")},
        ResourceNotFound,
    ),
    "429 throttled": (
        {
            "status_code": 429,
            "json": mde_error("TooManyRequests", "throttled"),
            "headers": {"Retry-After": "120"},
        },
        TransientError,
    ),
}


@pytest.mark.parametrize("answer", list(REFUSED))
def test_a_refusal_is_certain_and_not_outcome_unknown(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector, answer: str
) -> None:
    response, error = REFUSED[answer]
    _no_pending(httpx_mock)
    httpx_mock.add_response(url=POST_URL, method="POST", **response)

    with pytest.raises(error) as caught:
        connector.start_action(DEVICE, ActionKind.ISOLATE, "edrtrial: isolate pc-1")

    assert not isinstance(caught.value, OutcomeUnknown)
