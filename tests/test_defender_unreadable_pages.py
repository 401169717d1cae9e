"""A page whose body does not parse is read again within the same poll, a bounded number of
times; only then does the poll fail, keeping the pages it already stored.

Graph's answers are the documented payloads, cut short or replaced by what a proxy sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.errors import SchemaDriftError
from edrtrial.ingest import records
from edrtrial.ingest.polling import ingest_tenant
from edrtrial.models import Alert

from conftest import add_tenant
from test_defender_support import (
    ALERTS_URL,
    TENANT,
    FakeClock,
    fake_sign_in,
    fixture_text,
    graph_list,
    make_connector,
    payload,
)

DOC_ALERT = payload("graph__list_alerts_v2.json")["value"][0]
FIRST = DOC_ALERT | {"incidentId": None}
SECOND = FIRST | {"id": "da637551227677560813_-961444999"}
THIRD = FIRST | {"id": "da637551227677560813_-961444777"}
PAGE_2 = f"{ALERTS_URL}?$top=100&$skiptoken=d2c38f3e-page2"
PAGE_3 = f"{ALERTS_URL}?$top=100&$skiptoken=d2c38f3e-page3"
POLLED = datetime(2021, 5, 3, tzinfo=UTC)
WHOLE = fixture_text("graph__list_alerts_v2.json")
CUT_SHORT = WHOLE[: len(WHOLE) * 2 // 3]
PROXY_PAGE = "<html><body><h1>504 Gateway Time-out</h1>The upstream server timed out.</body></html>"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tenant(sessions: sessionmaker[Session]) -> int:
    return add_tenant(sessions, "sakura", "Sakura")


@pytest.fixture
def connector(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> Iterator[DefenderForBusinessConnector]:
    fake_sign_in(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path, clock)
    yield conn
    conn.close()


def first_pages(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=graph_list([FIRST], PAGE_2)
    )
    httpx_mock.add_response(url=PAGE_2, json=graph_list([SECOND], PAGE_3))


def stored(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return sorted(session.scalars(select(Alert.source_id)))


def test_a_page_that_does_not_parse_is_read_again_and_one_poll_stores_everything(
    sessions, tenant, connector, clock: FakeClock, httpx_mock: HTTPXMock
):
    first_pages(httpx_mock)
    httpx_mock.add_response(url=PAGE_3, text=CUT_SHORT)
    httpx_mock.add_response(url=PAGE_3, text=PROXY_PAGE, headers={"Content-Type": "text/html"})
    httpx_mock.add_response(url=PAGE_3, json=graph_list([THIRD]))

    result = ingest_tenant(sessions, tenant, connector, now=POLLED)

    assert (result.pages, result.alerts.inserted) == (3, 3)
    assert stored(sessions) == sorted([FIRST["id"], SECOND["id"], THIRD["id"]])
    assert len(httpx_mock.get_requests(url=PAGE_3)) == 3
    assert clock.sleeps == [0.5, 1.0]  # a short backoff, within the poll
    with sessions() as session:
        assert records.get_cursor(session, tenant, "alerts") is not None


def test_a_page_that_never_parses_fails_the_poll_with_one_line_and_keeps_the_pages_before(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    first_pages(httpx_mock)
    httpx_mock.add_response(url=PAGE_3, text="\x00garbage\x00", is_reusable=True)

    with pytest.raises(SchemaDriftError) as caught:
        ingest_tenant(sessions, tenant, connector, now=POLLED)

    message = str(caught.value)
    assert "\n" not in message
    assert TENANT in message
    assert "skiptoken=d2c38f3e-page3" in message
    assert "not JSON" in message
    assert len(httpx_mock.get_requests(url=PAGE_3)) == 3  # bounded: the first try and two more
    # Page 1 was committed once page 2 came (a page is stored when the next one is read).
    assert stored(sessions) == [FIRST["id"]]
    with sessions() as session:
        assert records.get_cursor(session, tenant, "alerts") is None  # moves with the last page


def test_after_a_failed_poll_the_next_one_stores_each_alert_once(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    first_pages(httpx_mock)
    for _ in range(3):
        httpx_mock.add_response(url=PAGE_3, text=CUT_SHORT)
    with pytest.raises(SchemaDriftError):
        ingest_tenant(sessions, tenant, connector, now=POLLED)

    first_pages(httpx_mock)
    httpx_mock.add_response(url=PAGE_3, json=graph_list([THIRD]))
    again = ingest_tenant(sessions, tenant, connector, now=POLLED)

    assert (again.alerts.inserted, again.alerts.updated) == (2, 0)  # page 1 is not stored twice
    assert stored(sessions) == sorted([FIRST["id"], SECOND["id"], THIRD["id"]])


@pytest.mark.parametrize(
    "reply",
    [{"content": b""}, {"content": b"  \r\n"}, {"json": {"@odata.context": "x"}}],
    ids=["empty body", "blank body", "an object without its list"],
)
def test_a_page_answered_without_its_list_is_read_again_within_the_poll(
    sessions, tenant, connector, clock: FakeClock, httpx_mock: HTTPXMock, reply
):
    first_pages(httpx_mock)
    httpx_mock.add_response(url=PAGE_3, **reply)
    httpx_mock.add_response(url=PAGE_3, json=graph_list([THIRD]))

    result = ingest_tenant(sessions, tenant, connector, now=POLLED)

    assert (result.pages, result.alerts.inserted) == (3, 3)
    assert stored(sessions) == sorted([FIRST["id"], SECOND["id"], THIRD["id"]])
    assert clock.sleeps == [0.5]


def test_a_page_that_stays_empty_fails_the_poll_saying_so(
    sessions, tenant, connector, httpx_mock: HTTPXMock
):
    first_pages(httpx_mock)
    httpx_mock.add_response(url=PAGE_3, content=b"", is_reusable=True)

    with pytest.raises(
        SchemaDriftError,
        match=r"skiptoken=d2c38f3e-page3 answered 200 with an "
        r"empty body, 3 times$",
    ):
        ingest_tenant(sessions, tenant, connector, now=POLLED)

    assert len(httpx_mock.get_requests(url=PAGE_3)) == 3
