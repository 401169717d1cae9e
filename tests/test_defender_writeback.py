"""Defender connector: writing the desk's verdict back to Graph, only when the tenant allows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import AlertUpdate, Capability
from edrtrial.errors import PermanentError

from test_defender_support import ALERTS_URL, fake_sign_in, make_connector, payload

ALERT_ID = "da637551227677560813_-961444813"  # the alert of the documented PATCH
ALERT_URL = f"{ALERTS_URL}/{ALERT_ID}"


def test_the_verdict_is_patched_in_graph_camel_case(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERT_URL, method="PATCH", json=payload("graph__update_alert_v2_response.json")
    )
    conn = make_connector(monkeypatch, tmp_path, write_back=True)

    conn.update_alert(ALERT_ID, AlertUpdate("inprogress", "truepositive", "malware"))
    conn.close()

    [patch] = httpx_mock.get_requests(url=ALERT_URL, method="PATCH")
    documented = payload("graph__update_alert_v2_request.json")
    del documented["assignedTo"]  # edrtrial does not assign alerts in the customer's portal
    assert json.loads(patch.content) == documented
    assert patch.headers["Content-Type"] == "application/json"
    assert Capability.WRITE_BACK in conn.capabilities


def test_a_comment_is_added_after_the_patch(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERT_URL, method="PATCH", json=payload("graph__update_alert_v2_response.json")
    )
    httpx_mock.add_response(url=f"{ALERT_URL}/comments", method="POST", json={"value": []})
    conn = make_connector(monkeypatch, tmp_path, write_back=True)

    conn.update_alert(
        ALERT_ID, AlertUpdate("resolved", "falsepositive", "clean", "Checked by the desk")
    )
    conn.close()

    [patch] = httpx_mock.get_requests(url=ALERT_URL, method="PATCH")
    assert json.loads(patch.content) == {
        "status": "resolved",
        "classification": "falsePositive",
        "determination": "clean",
    }
    [comment] = httpx_mock.get_requests(url=f"{ALERT_URL}/comments", method="POST")
    assert json.loads(comment.content) == {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": "Checked by the desk",
    }


def test_write_back_is_refused_while_the_switch_is_off(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn = make_connector(monkeypatch, tmp_path)

    with pytest.raises(PermanentError, match="write_back"):
        conn.update_alert(ALERT_ID, AlertUpdate("resolved"))
    conn.close()

    assert Capability.WRITE_BACK not in conn.capabilities
    assert httpx_mock.get_requests() == []


def test_an_alert_unknown_to_graph_is_a_permanent_error(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERT_URL,
        method="PATCH",
        status_code=404,
        json=payload("mde__error_resource_not_found_404.json"),
    )
    conn = make_connector(monkeypatch, tmp_path, write_back=True)

    with pytest.raises(PermanentError, match="404"):
        conn.update_alert(ALERT_ID, AlertUpdate("resolved"))
    conn.close()
