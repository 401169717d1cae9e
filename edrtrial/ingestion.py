"""Ingestion: connector pages into the store, crash-safe.

Each page is upserted and committed on its own (idempotent), and the stream's cursor moves
only in the transaction that stores the last page. A crash at any moment therefore leaves
the old cursor in place: the next poll fetches the same window again, and the upserts make
the repeat harmless. Nothing is lost, nothing is stored twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from edrtrial import store
from edrtrial.connectors.base import AlertRecord, Connector, IncidentRecord
from edrtrial.db import transaction
from edrtrial.timeutil import utcnow

log = logging.getLogger(__name__)

R = TypeVar("R", AlertRecord, IncidentRecord)


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What one stream's poll stored."""

    stream: str
    pages: int
    fetched: int
    counts: store.UpsertCount
    cursor: datetime | None


def _with_last(pages: Iterator[list[R]]) -> Iterator[tuple[list[R], bool]]:
    """Pair each page with whether it is the last one (look one page ahead)."""
    previous: list[R] | None = None
    for page in pages:
        if previous is not None:
            yield previous, False
        previous = page
    if previous is not None:
        yield previous, True


def _ingest_stream(
    sessions: sessionmaker[Session],
    tenant_id: int,
    stream: str,
    pages: Callable[[datetime | None], Iterator[list[R]]],
    upsert: Callable[[Session, int, str, Sequence[R]], store.UpsertCount],
    source: str,
    initial_since: datetime | None,
    started: datetime,
) -> StreamResult:
    with transaction(sessions) as session:
        cursor = store.get_cursor(session, tenant_id, stream)
    high_water = cursor
    counts = store.UpsertCount()
    fetched = page_count = 0
    for page, last in _with_last(pages(cursor or initial_since)):
        page_count += 1
        fetched += len(page)
        for record in page:
            # A record stamped in the future must not carry the cursor past today's alerts.
            seen = min(record.last_update_at, started)
            if high_water is None or seen > high_water:
                high_water = seen
        with transaction(sessions) as session:
            counts += upsert(session, tenant_id, source, page)
            if last and high_water is not None:
                store.set_cursor(session, tenant_id, stream, high_water)
    return StreamResult(stream, page_count, fetched, counts, high_water)


def ingest_tenant(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    *,
    initial_since: datetime | None = None,
    now: datetime | None = None,
) -> list[StreamResult]:
    """Poll every stream of one tenant once (incidents first, so tickets find their titles).

    `initial_since` bounds a tenant's very first poll (its trial start), so onboarding a
    tenant does not replay its whole alert history into the desk.
    """
    started = now or utcnow()
    results = []
    if "incidents" in connector.stream_names:
        results.append(
            _ingest_stream(
                sessions,
                tenant_id,
                "incidents",
                connector.fetch_incidents,
                store.upsert_incidents,
                connector.name,
                initial_since,
                started,
            )
        )
    results.append(
        _ingest_stream(
            sessions,
            tenant_id,
            "alerts",
            connector.fetch_alerts,
            store.upsert_alerts,
            connector.name,
            initial_since,
            started,
        )
    )
    for result in results:
        log.debug(
            "tenant %s %s: %d fetched, %d new, %d updated",
            tenant_id,
            result.stream,
            result.fetched,
            result.counts.inserted,
            result.counts.updated,
        )
    return results


def sync_inventory(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector
) -> store.UpsertCount:
    """Replace the tenant's view of its devices with the EDR's inventory."""
    devices = connector.fetch_devices()
    with transaction(sessions) as session:
        return store.upsert_devices(session, tenant_id, devices)
