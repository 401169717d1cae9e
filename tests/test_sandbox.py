"""The sandbox over real HTTPS: what a connector, a test or an operator would notice."""

from __future__ import annotations

import json
import ssl
import stat
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest

from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.connectors.defender.connector import _device_record
from edrtrial.sandbox import (
    SAMPLE_CLIENT_ID,
    SAMPLE_TENANTS,
    Budgets,
    SandboxServer,
    SandboxWorld,
)
from edrtrial.timeutil import format_iso, parse_iso

import clock

FIXTURES = Path(__file__).parent / "fixtures"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"
SAKURA, MIDORI, AOZORA = (t.tenant_id for t in SAMPLE_TENANTS)
ALERTS = "/v1.0/security/alerts_v2"
INCIDENTS = "/v1.0/security/incidents"
DETECTION_TEST = "[Test Alert] Suspicious Powershell commandline"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """One sandbox for the module; an hour between random alerts keeps lists stable.

    The module runs at the test's now (clock.NOW), so the ages of the sandbox's data, made
    relative to its clock, are the same whatever today is.
    """
    with clock.travel():
        world = SandboxWorld(seed=7, tenants=4, alert_interval_seconds=3600)
        sandbox = SandboxServer(world, state_dir=tmp_path_factory.mktemp("sandbox"))
        sandbox.start()
        yield sandbox
        sandbox.stop()


@pytest.fixture(scope="module")
def world(server: SandboxServer) -> SandboxWorld:
    return server.world


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, verify=_trust(server), timeout=10) as http:
        yield http


def _trust(server: SandboxServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def _secret(server: SandboxServer, tenant_id: str) -> str:
    return server.secret_path(tenant_id).read_text(encoding="utf-8").strip()


def _msal(server: SandboxServer, tenant_id: str, secret: str) -> Any:
    """An MSAL app as the Defender connector builds one for a sandbox authority."""
    http = httpx.Client(verify=_trust(server), timeout=10)
    _opened.append(http)
    return msal.ConfidentialClientApplication(
        SAMPLE_CLIENT_ID,
        client_credential=secret,
        authority=f"{server.base_url}/{tenant_id}",
        http_client=http,
        instance_discovery=False,
    )


_opened: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_msal_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _token_response(
    client: httpx.Client,
    server: SandboxServer,
    tenant: str,
    scope: str = GRAPH_SCOPE,
    **overrides: str,
) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": SAMPLE_CLIENT_ID,
        "client_secret": (
            _secret(server, tenant) if server.secret_path(tenant).exists() else "unused"
        ),
        "scope": scope,
        **overrides,
    }
    return client.post(f"/{tenant}/oauth2/v2.0/token", data=form)


def _auth(client: httpx.Client, server: SandboxServer, tenant: str, scope: str) -> dict[str, str]:
    response = _token_response(client, server, tenant, scope)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _graph(client: httpx.Client, server: SandboxServer, tenant: str) -> dict[str, str]:
    return _auth(client, server, tenant, GRAPH_SCOPE)


def _mde(client: httpx.Client, server: SandboxServer, tenant: str) -> dict[str, str]:
    return _auth(client, server, tenant, MDE_SCOPE)


def _all_pages(
    client: httpx.Client,
    headers: dict[str, str],
    path: str,
    params: dict[str, str],
    between_pages: Any = None,
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    response = client.get(path, params=params, headers=headers)
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        link = body.get("@odata.nextLink")
        if not link:
            return items
        pages += 1
        if between_pages is not None:
            between_pages(pages, items)
        assert link.startswith(str(client.base_url).rstrip("/") + path + "?")
        response = client.get(link, headers=headers)


# -- login ----------------------------------------------------------------------------------


def test_msal_gets_a_graph_token_and_an_mde_token(server: SandboxServer) -> None:
    app = _msal(server, SAKURA, _secret(server, SAKURA))
    for scope in (GRAPH_SCOPE, MDE_SCOPE):
        result = app.acquire_token_for_client(scopes=[scope])
        assert result.get("token_type") == "Bearer", result
        assert result["expires_in"] == 3599
        assert result["access_token"]


def test_msal_with_a_wrong_secret_gets_aadsts7000215(server: SandboxServer) -> None:
    result = _msal(server, SAKURA, "not-the-secret").acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret")


def test_msal_refuses_an_unknown_tenant_at_discovery(server: SandboxServer) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration") as caught:
        _msal(server, "00000000-0000-4000-8000-000000000000", "x")
    assert "AADSTS90002" in str(caught.value.__context__)


@pytest.mark.parametrize(
    ("tenant", "overrides", "status", "error", "code"),
    [
        ("00000000-0000-4000-8000-000000000000", {}, 400, "invalid_request", 90002),
        (
            SAKURA,
            {"client_id": "11111111-2222-4333-8444-555555555555"},
            400,
            "unauthorized_client",
            700016,
        ),
        (SAKURA, {"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        (
            SAKURA,
            {"scope": "https://management.azure.com/.default"},
            400,
            "invalid_resource",
            500011,
        ),
        (SAKURA, {"scope": "User.Read"}, 400, "invalid_scope", 1002012),
    ],
)
def test_token_refusals_use_entra_codes(
    client: httpx.Client,
    server: SandboxServer,
    tenant: str,
    overrides: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    response = _token_response(client, server, tenant, **overrides)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


def test_revoked_consent_refuses_tokens_and_ends_live_ones(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    tenant = world.tenants[3].tenant_id
    live = _graph(client, server, tenant)
    assert client.get(ALERTS, headers=live).status_code == 200
    world.set_consent(tenant, False)
    try:
        assert client.get(ALERTS, headers=live).status_code == 401
        refused = _token_response(client, server, tenant)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        assert refused.json()["error_codes"] == [65001]
    finally:
        world.set_consent(tenant, True)
    assert client.get(ALERTS, headers=_graph(client, server, tenant)).status_code == 200


def test_admin_consent_link_restores_consent_and_redirects(
    client: httpx.Client, world: SandboxWorld
) -> None:
    tenant = world.tenants[3].tenant_id
    world.set_consent(tenant, False)
    response = client.get(
        f"/{tenant}/adminconsent",
        params={"client_id": SAMPLE_CLIENT_ID, "state": "s1", "redirect_uri": "https://x.test/cb"},
    )
    assert response.status_code == 302
    assert response.headers["location"] == (
        f"https://x.test/cb?admin_consent=True&tenant={tenant}&state=s1"
    )
    assert world.summary()["tenants"][3]["consent"] is True


# -- who sees what --------------------------------------------------------------------------


def test_a_graph_token_is_refused_by_mde_and_no_token_by_graph(
    client: httpx.Client, server: SandboxServer
) -> None:
    refused = client.get("/api/machines", headers=_graph(client, server, SAKURA))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "Unauthorized"
    anonymous = client.get(ALERTS)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in anonymous.headers


def test_a_tenant_never_sees_another_tenants_alerts_or_machines(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    sakura = _all_pages(client, _graph(client, server, SAKURA), ALERTS, {"$top": "50"})
    midori = _all_pages(client, _graph(client, server, MIDORI), ALERTS, {"$top": "50"})
    assert sakura and midori
    assert {a["tenantId"] for a in sakura} == {SAKURA}
    assert {a["tenantId"] for a in midori} == {MIDORI}
    assert not {a["id"] for a in sakura} & {a["id"] for a in midori}
    foreign = client.get(f"{ALERTS}/{midori[0]['id']}", headers=_graph(client, server, SAKURA))
    assert foreign.status_code == 404
    machines = client.get("/api/machines", headers=_mde(client, server, SAKURA)).json()["value"]
    assert {m["id"] for m in machines} == set(world.device_ids(SAKURA))
    assert not set(world.device_ids(MIDORI)) & {m["id"] for m in machines}


def test_sample_tenants_have_their_devices(client: httpx.Client, server: SandboxServer) -> None:
    fleets = {SAKURA: (12, "macOS"), MIDORI: (8, None), AOZORA: (5, "Linux")}
    for tenant, (size, other) in fleets.items():
        response = client.get("/api/machines", headers=_mde(client, server, tenant))
        assert response.headers["OData-Version"] == "4.0"
        machines = response.json()["value"]
        platforms = Counter(m["osPlatform"] for m in machines)
        assert len(machines) == size
        assert platforms[other] == (1 if other else 0)
        assert set(platforms) - {other} <= {"Windows10", "Windows11"}
        assert all(len(m["id"]) == 40 and m["onboardingStatus"] == "Onboarded" for m in machines)
        week_ago = datetime.now(UTC) - timedelta(days=7)
        active = [m for m in machines if parse_iso(m["lastSeen"]) >= week_ago]
        assert 0 < len(active) < len(machines)


# -- Graph lists ----------------------------------------------------------------------------


def test_paging_follows_next_link_to_exactly_the_full_set(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    world.add_alerts(AOZORA, "pua", 25)
    items = _all_pages(client, _graph(client, server, AOZORA), ALERTS, {"$top": "7"})
    ids = [a["id"] for a in items]
    assert len(ids) == len(set(ids))
    assert set(ids) == {a["id"] for a in world.alerts(AOZORA)}


def test_paging_survives_updates_between_pages(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _graph(client, server, MIDORI)
    before = [a["id"] for a in world.alerts(MIDORI)]
    assert len(before) > 10
    unseen = before[-4]
    updated: dict[str, str] = {}

    def update(page: int, seen: list[dict[str, Any]]) -> None:
        if page != 1:
            return
        for alert_id in (seen[0]["id"], unseen):  # one already seen, one still ahead
            response = client.patch(
                f"{ALERTS}/{alert_id}", json={"status": "inProgress"}, headers=headers
            )
            assert response.status_code == 200
            updated[alert_id] = response.json()["lastUpdateDateTime"]

    items = _all_pages(client, headers, ALERTS, {"$top": "4"}, between_pages=update)
    times: dict[str, list[str]] = {}
    counts = Counter(a["id"] for a in items)
    for alert in items:
        times.setdefault(alert["id"], []).append(alert["lastUpdateDateTime"])
    seen_first = items[0]["id"]
    assert set(counts) == set(before)
    assert counts[seen_first] == 2 and times[seen_first][-1] == updated[seen_first]
    assert counts[unseen] == 1 and times[unseen] == [updated[unseen]]
    assert all(n == 1 for alert_id, n in counts.items() if alert_id != seen_first)


def test_filter_on_last_update_returns_only_newer_alerts(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _graph(client, server, SAKURA)
    everything = world.alerts(SAKURA)
    cutoff = parse_iso(everything[len(everything) // 2]["lastUpdateDateTime"])
    newer = _all_pages(
        client, headers, ALERTS, {"$filter": f"lastUpdateDateTime ge {format_iso(cutoff)}"}
    )
    expected = {a["id"] for a in everything if parse_iso(a["lastUpdateDateTime"]) >= cutoff}
    assert {a["id"] for a in newer} == expected
    assert 0 < len(expected) < len(everything)

    mark = datetime.now(UTC)
    added = world.add_alerts(SAKURA, "ransomware")
    since = {
        "$filter": f"lastUpdateDateTime gt {format_iso(mark)} and "
        "serviceSource eq 'microsoftDefenderForEndpoint' and severity eq 'high'"
    }
    assert [a["id"] for a in _all_pages(client, headers, ALERTS, since)] == added


@pytest.mark.parametrize(
    "bad_filter",
    [
        "investigationState eq 'running'",
        "lastUpdateDateTime ge '2024-01-01T00:00:00Z'",
        "severity eq 'high' or severity eq 'medium'",
    ],
)
def test_unsupported_filters_get_a_graph_400(
    client: httpx.Client, server: SandboxServer, bad_filter: str
) -> None:
    response = client.get(
        ALERTS, params={"$filter": bad_filter}, headers=_graph(client, server, SAKURA)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Invalid filter clause")
    assert {"date", "request-id", "client-request-id"} == error["innerError"].keys()


def test_incidents_top_above_50_gets_graphs_exact_400(
    client: httpx.Client, server: SandboxServer
) -> None:
    response = client.get(INCIDENTS, params={"$top": "51"}, headers=_graph(client, server, SAKURA))
    assert response.status_code == 400
    expected = json.loads((FIXTURES / "graph__error_incidents_top_exceeds_50_400.json").read_text())
    expected["error"]["message"] = expected["error"]["message"].replace("'100'", "'51'")
    body = response.json()
    assert list(body["error"]) == list(expected["error"])
    assert list(body["error"]["innerError"]) == list(expected["error"]["innerError"])
    for key in ("code", "message", "details"):
        assert body["error"][key] == expected["error"][key]


def test_sample_tenants_start_with_detection_tests_and_high_incidents(
    client: httpx.Client, server: SandboxServer
) -> None:
    for tenant in (SAKURA, MIDORI, AOZORA):
        headers = _graph(client, server, tenant)
        alerts = _all_pages(client, headers, ALERTS, {"$top": "100"})
        tests = [a for a in alerts if a["title"] == DETECTION_TEST]
        assert tests
        machines = {
            m["id"]: m
            for m in client.get("/api/machines", headers=_mde(client, server, tenant)).json()[
                "value"
            ]
        }
        windows = [m for m in machines.values() if m["osPlatform"].startswith("Windows")]
        assert len({a["evidence"][0]["mdeDeviceId"] for a in tests}) < len(windows)
        for alert in tests:
            assert (alert["severity"], alert["category"]) == ("informational", "Execution")
            assert alert["mitreTechniques"] == ["T1059.001"]
            device = alert["evidence"][0]
            assert device["@odata.type"] == "#microsoft.graph.security.deviceEvidence"
            assert machines[device["mdeDeviceId"]]["computerDnsName"] == device["deviceDnsName"]
            assert machines[device["mdeDeviceId"]]["osPlatform"] == device["osPlatform"]
        if tenant == AOZORA:
            continue
        high = _all_pages(
            client,
            headers,
            INCIDENTS,
            {"$filter": "severity eq 'high' and status eq 'active'", "$expand": "alerts"},
        )
        assert any(
            2 <= len(i["alerts"]) <= 3
            and len({a["evidence"][0]["mdeDeviceId"] for a in i["alerts"]}) == 1
            for i in high
        )


def test_patching_alerts_moves_the_incident_along(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _graph(client, server, AOZORA)
    ids = world.add_alerts(AOZORA, "exploration", 2, incident_id="new")
    incident_id = world.get_alert(AOZORA, ids[0])["incidentId"]
    before = client.get(f"{INCIDENTS}/{incident_id}", headers=headers).json()
    assert (before["status"], before["severity"]) == ("active", "medium")
    for alert_id in ids:
        patched = client.patch(
            f"{ALERTS}/{alert_id}",
            json={
                "status": "resolved",
                "classification": "truePositive",
                "determination": "malware",
                "assignedTo": "soc@example.jp",
            },
            headers=headers,
        ).json()
        assert patched["status"] == "resolved" and patched["resolvedDateTime"]
        assert patched["lastUpdateDateTime"] > before["lastUpdateDateTime"]
    after = client.get(
        f"{INCIDENTS}/{incident_id}", params={"$expand": "alerts"}, headers=headers
    ).json()
    assert after["status"] == "resolved"
    assert after["lastUpdateDateTime"] == max(a["lastUpdateDateTime"] for a in after["alerts"])
    bad = client.patch(f"{ALERTS}/{ids[0]}", json={"severity": "low"}, headers=headers)
    assert bad.status_code == 400


# -- MDE actions ----------------------------------------------------------------------------


def _wait_for(client: httpx.Client, headers: dict[str, str], action_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        current = client.get(f"/api/machineactions/{action_id}", headers=headers).json()
        seen.append(current["status"])
        if current["status"] == status:
            return
        time.sleep(0.1)
    pytest.fail(f"action {action_id} went {seen}, never {status}")


def test_isolate_is_pending_then_succeeds_and_refuses_a_duplicate(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _mde(client, server, SAKURA)
    device = world.device_ids(SAKURA, "Windows11")[0]
    world.set_action_seconds(0.9)
    try:
        created = client.post(
            f"/api/machines/{device}/isolate",
            json={"Comment": "alert 42", "IsolationType": "Full"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        action = created.json()
        assert (action["type"], action["scope"], action["status"]) == ("Isolate", "Full", "Pending")
        assert action["requestor"] == SAMPLE_CLIENT_ID
        assert action["requestSource"] == "PublicApi"
        assert action["machineId"] == device
        again = client.post(
            f"/api/machines/{device}/isolate", json={"Comment": "again"}, headers=headers
        )
        assert again.status_code == 400
        assert again.json()["error"]["code"] == "ActiveRequestAlreadyExists"
        assert again.json()["error"]["message"] == "Action is already in progress"
        assert not world.is_isolated(SAKURA, device)
        _wait_for(client, headers, action["id"], "Succeeded")
        assert world.is_isolated(SAKURA, device)
        listed = client.get(
            "/api/machineactions",
            params={"$filter": f"machineId eq '{device}' and type eq 'Isolate'"},
            headers=headers,
        ).json()
        assert [a["id"] for a in listed["value"]] == [action["id"]]
        assert "@odata.nextLink" not in listed
        release = client.post(
            f"/api/machines/{device}/unisolate", json={"Comment": "clean"}, headers=headers
        ).json()
        _wait_for(client, headers, release["id"], "Succeeded")
        assert not world.is_isolated(SAKURA, device)
        assert world.action_counts(SAKURA)[device] == {"Isolate": 1, "Unisolate": 1}
    finally:
        world.set_action_seconds(6)


def test_an_action_fault_records_the_action_then_answers_5xx_once_or_always(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _mde(client, server, SAKURA)
    device = world.device_ids(SAKURA, "Windows11")[-1]
    bad = client.post("/sandbox/settings", json={"action_fault": "sometimes"})
    assert bad.status_code == 400
    set_once = client.post("/sandbox/settings", json={"action_fault": "error_after_record"})
    assert set_once.json()["action_fault_repeat"] == "once"
    world.set_action_seconds(0)
    try:
        failed = client.post(
            f"/api/machines/{device}/runAntiVirusScan",
            json={"Comment": "scan", "ScanType": "Quick"},
            headers=headers,
        )
        assert failed.status_code == 503
        assert client.get("/sandbox/settings").json()["action_fault"] == "none"  # used up
        # The action exists although the answer said otherwise; the connector's filter finds it.
        since = format_iso(datetime.now(UTC) - timedelta(minutes=5))
        listed = client.get(
            "/api/machineactions",
            params={
                "$filter": f"machineId eq '{device}' and type eq 'RunAntiVirusScan' and "
                f"requestor eq '{SAMPLE_CLIENT_ID}' and creationDateTimeUtc ge {since}"
            },
            headers=headers,
        ).json()["value"]
        assert len(listed) == 1 and listed[0]["status"] == "Succeeded"
        client.post(
            "/sandbox/settings",
            json={"action_fault": "error_after_record", "action_fault_repeat": "always"},
        )
        for _ in range(2):
            again = client.post(
                f"/api/machines/{device}/runAntiVirusScan",
                json={"Comment": "scan", "ScanType": "Quick"},
                headers=headers,
            )
            assert again.status_code == 503
        assert world.action_counts(SAKURA)[device]["RunAntiVirusScan"] == 3
    finally:
        world.set_action_fault("none")
        world.set_action_seconds(6)


def test_action_requests_are_checked_like_mde(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _mde(client, server, SAKURA)
    mac = world.device_ids(SAKURA, "macOS")[0]
    refused = client.post(f"/api/machines/{mac}/offboard", json={"Comment": "end"}, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "OsPlatformNotSupported"
    windows = world.device_ids(SAKURA, "Windows10") or world.device_ids(SAKURA, "Windows11")
    no_comment = client.post(f"/api/machines/{windows[-1]}/offboard", json={}, headers=headers)
    assert no_comment.status_code == 400
    assert no_comment.json()["error"]["code"] == "InvalidRequestBody"
    wrong_case = client.post(
        f"/api/machines/{windows[-1]}/runAntiVirusScan",
        json={"comment": "x", "scanType": "Quick"},
        headers=headers,
    )
    assert wrong_case.json()["error"]["code"] == "InvalidRequestBody"
    missing = client.post(
        "/api/machines/0000000000000000000000000000000000000000/isolate",
        json={"Comment": "x"},
        headers=headers,
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceNotFound"
    not_guid = client.get(f"/api/machineactions/{windows[-1]}", headers=headers)
    assert not_guid.status_code == 400
    assert "Edm.Guid" in not_guid.json()["error"]["message"]
    unknown = client.get(
        "/api/machineactions/5382f7ea-7557-4ab7-9782-d50480024a4e", headers=headers
    )
    assert unknown.status_code == 404


def test_offboarding_a_windows_device_makes_it_inactive(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _mde(client, server, MIDORI)
    device = world.device_ids(MIDORI)[-1]
    world.set_action_seconds(0)
    try:
        action = client.post(
            f"/api/machines/{device}/offboard", json={"Comment": "trial over"}, headers=headers
        ).json()
    finally:
        world.set_action_seconds(6)
    assert (action["type"], action["status"]) == ("Offboard", "Succeeded")
    machine = client.get(f"/api/machines/{device}", headers=headers).json()
    assert machine["healthStatus"] == "Inactive"


def test_mde_lists_404_when_the_tenant_has_no_machines(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    tenant = world.tenants[3].tenant_id
    assert client.post("/sandbox/clear", json={"tenant": tenant}).status_code == 200
    response = client.get("/api/machines", headers=_mde(client, server, tenant))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"


# -- throttling, latency, controls ----------------------------------------------------------


def test_exceeding_a_budget_gets_429_with_retry_after(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    graph, mde = _graph(client, server, AOZORA), _mde(client, server, AOZORA)
    world.set_budgets(Budgets(graph_per_minute=3, mde_per_minute=3, mde_per_hour=1500))
    try:
        graph_codes = [client.get(INCIDENTS, headers=graph) for _ in range(4)]
        mde_codes = [client.get("/api/machines", headers=mde) for _ in range(4)]
        other_api = client.get("/api/machineactions", headers=mde)
    finally:
        world.set_budgets(Budgets())
    throttled = graph_codes[-1]
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert "innerError" in throttled.json()["error"]
    assert mde_codes[-1].status_code == 429
    assert mde_codes[-1].json()["error"]["code"] == "TooManyRequests"
    assert int(mde_codes[-1].headers["Retry-After"]) >= 1
    assert other_api.status_code == 200  # MDE budgets each API separately


def test_requests_are_counted_per_tenant_and_api_until_reset(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    fourth = world.tenants[3].tenant_id
    world.reset_request_counts()
    app = _msal(server, fourth, _secret(server, fourth))
    for _ in range(2):  # the second token comes from MSAL's cache: no request
        token = app.acquire_token_for_client([GRAPH_SCOPE])["access_token"]
    graph, mde = {"Authorization": f"Bearer {token}"}, _mde(client, server, fourth)
    world.set_budgets(Budgets(graph_per_minute=1))
    try:
        codes = [client.get(INCIDENTS, headers=graph).status_code for _ in range(2)]
        codes.append(client.get(ALERTS, headers=graph).status_code)
    finally:
        world.set_budgets(Budgets())
    client.get("/api/machines", headers=mde)
    client.get(ALERTS, headers={"Authorization": "Bearer not-a-token"})

    assert codes[1:] == [429, 429]
    assert world.request_counts(fourth) == {
        "login:discovery": 1,
        "login:token": 2,
        "graph:list_incidents": 2,
        "graph:list_alerts": 1,  # a throttled request still counts
        "mde:list_machines": 1,
    }
    assert world.request_counts(SAKURA) == {}
    world.reset_request_counts()
    assert world.request_counts(fourth) == {}


def test_latency_slows_api_calls_but_not_controls(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    headers = _graph(client, server, SAKURA)
    assert client.post("/sandbox/settings", json={"latency_seconds": 0.4}).status_code == 200
    try:
        started = time.monotonic()
        assert client.get(INCIDENTS, headers=headers).status_code == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        client.get("/sandbox/state")
        fast = time.monotonic() - started
    finally:
        world.set_latency(0)
    assert slow >= 0.4 > fast


def test_control_endpoints_add_alerts_and_report_counts(
    client: httpx.Client, server: SandboxServer, world: SandboxWorld
) -> None:
    before = world.alert_count(AOZORA)
    added = client.post(
        "/sandbox/alerts", json={"tenant": "aozora-design", "kind": "eicar", "count": 3}
    )
    assert added.status_code == 200, added.text
    assert len(added.json()["alert_ids"]) == 3
    state = client.get("/sandbox/state").json()
    aozora = next(t for t in state["tenants"] if t["key"] == "aozora-design")
    assert aozora["alerts"] == before + 3
    unknown = client.post("/sandbox/alerts", json={"tenant": "aozora-design", "kind": "nope"})
    assert unknown.status_code == 400


# -- state across restarts, determinism, time ------------------------------------------------


def test_certificates_and_secrets_are_reused_across_starts(tmp_path: Path) -> None:
    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    with SandboxServer(SandboxWorld(tenants=3), state_dir=tmp_path):
        created = files()
    with SandboxServer(SandboxWorld(tenants=3), state_dir=tmp_path) as second:
        assert files() == created
        app = _msal(second, MIDORI, _secret(second, MIDORI))
        assert "access_token" in app.acquire_token_for_client([GRAPH_SCOPE])
    assert {"ca.pem", "server-cert.pem", "server-key.pem", f"{MIDORI}.secret"} <= created.keys()
    for private in (tmp_path / "server-key.pem", second.secret_path(MIDORI)):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_a_seed_gives_the_same_world(fixed_clock: Any) -> None:
    def snapshot(seed: int) -> list[Any]:
        world = SandboxWorld(seed=seed, tenants=5, clock=fixed_clock)
        return [
            (world.alerts(t.tenant_id), world.list_machines(t.tenant_id, [], 0, 10_000))
            for t in world.tenants
        ]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


@pytest.fixture
def fixed_clock() -> Any:
    moment = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
    return lambda: moment


def test_alerts_carry_evidence_in_graph_form_that_the_connector_reads(fixed_clock: Any) -> None:
    world = SandboxWorld(tenants=3, backlog_alerts=60, clock=fixed_clock)
    world.add_alerts(AOZORA, "phishing_link", 2)
    world.add_alerts(AOZORA, "c2_beacon", 2)
    world.add_alerts(AOZORA, "linux_miner", 1)
    alerts = [a for t in world.tenants for a in world.alerts(t.tenant_id)]
    for alert in alerts:
        types = [e["@odata.type"].rsplit(".", 1)[-1] for e in alert["evidence"]]
        assert types[:2] == ["deviceEvidence", "userEvidence"]
        account = alert["evidence"][1]["userAccount"]
        assert {"accountName", "domainName", "userPrincipalName"} <= account.keys()
        found = DefenderForBusinessConnector.map_alert(alert).evidence
        assert found.users[:3] == (
            account["accountName"],
            f"{account['domainName']}\\{account['accountName']}",
            account["userPrincipalName"],
        )
        if alert["category"] == "Malware":  # antivirus detections name the file
            details = next(e["fileDetails"] for e in alert["evidence"] if "fileDetails" in e)
            assert details["sha256"] in found.file_hashes
        if alert["title"] in NETWORK_TITLES:
            assert "urlEvidence" in types and "ipEvidence" in types
            assert len(found.urls) == len(found.ips) == 1
            assert found.ips[0].startswith("198.51.100.")  # documentation addresses only
        else:
            assert (found.urls, found.ips) == ((), ())
    assert {a["title"] for a in alerts} >= NETWORK_TITLES


NETWORK_TITLES = {
    "A potentially malicious URL click was detected",
    "Possible command and control (C2) communication",
    "'CoinMiner' malware was detected",
}


def test_some_machines_are_tagged_and_tags_reach_the_device_record(fixed_clock: Any) -> None:
    world = SandboxWorld(tenants=3, clock=fixed_clock)
    for tenant in world.tenants:
        machines = world.list_machines(tenant.tenant_id, [], 0, 10_000)
        tags = {m["computerDnsName"].split(".")[0]: m["machineTags"] for m in machines}
        assert tags["pc-001"] == ["vip"]
        assert all(v == ["server"] for k, v in tags.items() if k.startswith("srv-"))
        others = [v for k, v in tags.items() if k.startswith(("pc-", "mac-")) and k != "pc-001"]
        assert others and all(v == [] for v in others)
        records = {r.name.split(".")[0]: r.tags for r in map(_device_record, machines)}
        assert records["pc-001"] == ("vip",)
    aozora = world.list_machines(AOZORA, [], 0, 10_000)
    assert ["server"] in [m["machineTags"] for m in aozora]


def test_backlog_gives_exactly_n_alerts_per_tenant(fixed_clock: Any) -> None:
    world = SandboxWorld(tenants=4, backlog_alerts=300, clock=fixed_clock)
    for tenant in world.tenants:
        alerts = world.alerts(tenant.tenant_id)
        assert len(alerts) == 300
        assert len({a["severity"] for a in alerts}) >= 3
        assert max(Counter(a["incidentId"] for a in alerts).values()) > 1


def test_time_brings_new_alerts_and_incidents_follow_them() -> None:
    now = [datetime(2025, 6, 2, 1, 0, tzinfo=UTC)]
    world = SandboxWorld(tenants=3, alert_interval_seconds=30, clock=lambda: now[0])
    start = {t.tenant_id: world.alert_count(t.tenant_id) for t in world.tenants}
    for _ in range(40):
        now[0] += timedelta(seconds=15)
        world.tick()
    rank = {"informational": 1, "low": 2, "medium": 3, "high": 4}
    for tenant in world.tenants:
        assert world.alert_count(tenant.tenant_id) >= start[tenant.tenant_id] + 15
        page = world.list_incidents(tenant.tenant_id, [], None, 0, 10_000, expand=True)
        for incident in page.items:
            alerts = incident["alerts"]
            assert incident["lastUpdateDateTime"] == max(a["lastUpdateDateTime"] for a in alerts)
            resolved = all(a["status"] == "resolved" for a in alerts)
            assert (incident["status"] == "resolved") == resolved
            worst = max((a["severity"] for a in alerts), key=rank.__getitem__)
            assert incident["severity"] == worst
