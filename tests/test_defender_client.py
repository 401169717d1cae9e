"""Defender API client: throttling, server/network failures, bad bodies, auth refusals, paging."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpx import HTTPXMock

from edrtrial.connectors.defender import DefenderSettings
from edrtrial.connectors.defender.auth import TokenProvider
from edrtrial.connectors.defender.client import Api, DefenderClient
from edrtrial.connectors.defender.credential import secret_credential
from edrtrial.errors import AuthError, SchemaDriftError, TransientError

from test_defender_support import (
    ALERTS_URL,
    FIXTURES,
    MACHINES_URL,
    SECRET,
    SECRET_ENV,
    TENANT,
    FakeClock,
    connection,
    fake_sign_in,
    mde_error,
    payload,
)

ALERTS_PATH = "/v1.0/security/alerts_v2"
TOP = {"$top": "100"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(httpx_mock: HTTPXMock, clock: FakeClock) -> Iterator[DefenderClient]:
    fake_sign_in(httpx_mock)
    settings = DefenderSettings.model_validate(connection())
    credential = secret_credential(f"env:{SECRET_ENV}", SecretStr(SECRET))
    with httpx.Client(timeout=settings.timeout_seconds) as http:
        tokens = TokenProvider(settings, credential, http)
        yield DefenderClient(settings, http, tokens, clock.clock())


def test_a_long_retry_after_is_transient_at_once_with_its_seconds(
    httpx_mock: HTTPXMock, client: DefenderClient, clock: FakeClock
) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params=TOP,
        status_code=429,
        headers={"Retry-After": "37"},
        json=payload("graph__error_429_too_many_requests.json"),
    )

    with pytest.raises(TransientError) as caught:
        client.get_json(Api.GRAPH, ALERTS_PATH, TOP)

    assert caught.value.retry_after == 37
    assert "TooManyRequests" in str(caught.value)
    assert TENANT in str(caught.value)
    assert clock.sleeps == []  # 37 s is past max_wait_seconds (10): the scheduler waits instead


def test_retry_after_may_be_an_http_date(
    httpx_mock: HTTPXMock, client: DefenderClient, clock: FakeClock
) -> None:
    later = format_datetime(clock.start + timedelta(seconds=90), usegmt=True)
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params=TOP,
        status_code=429,
        headers={"Retry-After": later},
        json=payload("graph__error_429_too_many_requests.json"),
    )

    with pytest.raises(TransientError) as caught:
        client.get_json(Api.GRAPH, ALERTS_PATH, TOP)

    assert caught.value.retry_after == 90


def test_persistent_server_error_is_transient_after_three_tries_with_backoff(
    httpx_mock: HTTPXMock, client: DefenderClient, clock: FakeClock
) -> None:
    httpx_mock.add_response(url=ALERTS_URL, match_params=TOP, status_code=500, is_reusable=True)

    with pytest.raises(TransientError) as caught:
        client.get_json(Api.GRAPH, ALERTS_PATH, TOP)

    assert caught.value.retry_after is None
    assert len(httpx_mock.get_requests(url=ALERTS_URL, match_params=TOP)) == 3
    assert clock.sleeps == [0.5, 1.0]  # exponential from 0.5 s (jitter pinned to 0 here)


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("read timed out"), httpx.ConnectError("connection reset")]
)
def test_persistent_timeouts_and_connection_errors_are_transient(
    httpx_mock: HTTPXMock, client: DefenderClient, clock: FakeClock, failure: httpx.RequestError
) -> None:
    httpx_mock.add_exception(failure, url=ALERTS_URL, match_params=TOP, is_reusable=True)

    with pytest.raises(TransientError) as caught:
        client.get_json(Api.GRAPH, ALERTS_PATH, TOP)

    assert isinstance(caught.value.__cause__, type(failure))
    assert len(clock.sleeps) == 2


def test_every_request_carries_a_timeout(httpx_mock: HTTPXMock, client: DefenderClient) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, json=payload("graph__list_alerts_v2.json")
    )

    client.get_json(Api.GRAPH, ALERTS_PATH, TOP)

    for request in httpx_mock.get_requests():
        assert request.extensions["timeout"]["read"] == 30.0


def test_malformed_json_is_schema_drift_naming_the_url(
    httpx_mock: HTTPXMock, client: DefenderClient
) -> None:
    text = (FIXTURES / "graph__list_alerts_v2.json").read_text()
    httpx_mock.add_response(
        url=ALERTS_URL, match_params=TOP, text=text[: len(text) // 2], is_reusable=True
    )

    url = r"https://graph\.microsoft\.com/v1\.0/security/alerts_v2\?"
    with pytest.raises(SchemaDriftError, match=rf"GET {url}.* not JSON.*, 3 times"):
        client.get_json(Api.GRAPH, ALERTS_PATH, TOP)


def test_an_object_without_a_value_list_is_read_again_then_schema_drift(
    httpx_mock: HTTPXMock, client: DefenderClient
) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        json=payload("mde__machineaction_isolate_resource.json"),
        is_reusable=True,
    )

    with pytest.raises(SchemaDriftError, match=r"/api/machines.*no 'value' array\), 3 times"):
        list(client.mde_pages("/api/machines"))
    assert len(httpx_mock.get_requests(url=re.compile(re.escape(MACHINES_URL) + r"\?.*"))) == 3


def test_disabled_feature_is_an_auth_error_explaining_provisioning(
    httpx_mock: HTTPXMock, client: DefenderClient
) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        status_code=403,
        json=mde_error("DisabledFeature", "Tenant feature isn't enabled"),
    )

    with pytest.raises(AuthError) as caught:
        list(client.mde_pages("/api/machines"))

    assert "DisabledFeature" in str(caught.value)
    assert "provisioned" in caught.value.operator_action


def test_a_refused_token_is_an_auth_error(httpx_mock: HTTPXMock, client: DefenderClient) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        status_code=401,
        json=mde_error("Unauthorized", "Unauthorized"),
    )

    with pytest.raises(AuthError) as caught:
        list(client.mde_pages("/api/machines"))
    assert "mde_scope" in caught.value.operator_action


def test_mde_pages_with_top_and_skip_until_a_short_page(
    httpx_mock: HTTPXMock, client: DefenderClient
) -> None:
    machines = payload("mde__list_machines.json")
    httpx_mock.add_response(
        url=MACHINES_URL, match_params={"$top": "1", "$skip": "0"}, json=machines
    )
    httpx_mock.add_response(
        url=MACHINES_URL, match_params={"$top": "1", "$skip": "1"}, json=machines | {"value": []}
    )

    pages = list(client.mde_pages("/api/machines", page_size=1))

    assert [len(page) for page in pages] == [1, 0]


def test_mde_ignoring_skip_stops_with_schema_drift(
    httpx_mock: HTTPXMock, client: DefenderClient
) -> None:
    machines = payload("mde__list_machines.json")
    httpx_mock.add_response(
        url=MACHINES_URL, match_params={"$top": "1", "$skip": "0"}, json=machines
    )
    httpx_mock.add_response(
        url=MACHINES_URL, match_params={"$top": "1", "$skip": "1"}, json=machines
    )

    with pytest.raises(SchemaDriftError, match="ignored"):
        list(client.mde_pages("/api/machines", page_size=1))
