"""Ingestion: connector batches into the store, crash-safe.

Each page of alerts is upserted and committed on its own (idempotent), with the records the
connector could not map kept in quarantine in the same commit; the stream's cursor moves
only in the transaction that stores the last page. A crash at any moment therefore leaves
the old cursor in place: the next poll fetches the same window again, and the upserts make
the repeat harmless. Nothing is lost, nothing is stored twice.

Incidents are read by id, only for alerts that are new or changed, so a poll that finds
nothing new costs one call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.base import AlertRecord, Batch, Capability, Connector
from edrtrial.db import transaction
from edrtrial.ingest import records
from edrtrial.timeutil import Stamp, utcnow

log = logging.getLogger(__name__)

ALERTS = "alerts"
INCIDENT_RECOVERY_WINDOW = timedelta(hours=6)
"""How far back a poll looks for alerts whose incident was never read (a crash in between)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one poll of a tenant stored."""

    pages: int = 0
    fetched: int = 0
    alerts: records.UpsertCount = records.UpsertCount()
    incidents: records.UpsertCount = records.UpsertCount()
    quarantined: int = 0
    cursor: Stamp | None = None


def _with_last(pages: Iterator[T]) -> Iterator[tuple[T, bool]]:
    """Pair each page with whether it is the last one (look one page ahead)."""
    iterator = iter(pages)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    for page in iterator:
        yield previous, False
        previous = page
    yield previous, True


def ingest_tenant(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    *,
    initial_since: datetime | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Poll one tenant's alerts (and the incidents they name) once.

    `initial_since` bounds a tenant's very first poll (its trial start), so onboarding a
    tenant does not replay its whole alert history into the desk.
    """
    started = now or utcnow()
    started_stamp = Stamp.of(started)
    source = connector.name
    with transaction(sessions) as session:
        cursor = records.get_cursor(session, tenant_id, ALERTS)
    if cursor is None and initial_since is not None:
        since: Stamp | None = Stamp.of(initial_since)
    else:
        since = cursor
    high_water = cursor
    alerts = records.UpsertCount()
    earliest_change: Stamp | None = None
    fetched = pages = quarantined = 0
    batch: Batch[AlertRecord]
    for batch, last in _with_last(connector.fetch_alerts(since)):
        pages += 1
        fetched += len(batch.records)
        for record in batch.records:
            # A record stamped in the future must not carry the cursor past today's alerts.
            seen = min(record.last_update_at, started_stamp)
            if high_water is None or seen > high_water:
                high_water = seen
        with transaction(sessions) as session:
            counted = records.upsert_alerts(session, tenant_id, source, batch.records)
            alerts += counted
            quarantined += records.quarantine(session, tenant_id, source, batch.rejected, started)
            if last and high_water is not None:
                records.set_cursor(session, tenant_id, ALERTS, high_water)
        for record in batch.records:
            if record.source_id in counted.changed and (
                earliest_change is None or record.last_update_at < earliest_change
            ):
                earliest_change = record.last_update_at
    incidents, set_aside = _ingest_incidents(
        sessions, tenant_id, connector, sorted(alerts.changed), earliest_change, started
    )
    quarantined += set_aside
    log.debug(
        "%d alerts fetched in %d pages: %d new, %d updated; %d incidents; %d quarantined",
        fetched,
        pages,
        alerts.inserted,
        alerts.updated,
        incidents.inserted + incidents.updated,
        quarantined,
    )
    return IngestResult(pages, fetched, alerts, incidents, quarantined, high_water)


def _ingest_incidents(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    changed_alerts: list[str],
    earliest_change: Stamp | None,
    started: datetime,
) -> tuple[records.UpsertCount, int]:
    """Fetch the incidents that changed alerts name (or that were missed); (counts, set aside)."""
    if Capability.INCIDENTS not in connector.capabilities:
        return records.UpsertCount(), 0
    source = connector.name
    with transaction(sessions) as session:
        wanted = records.incidents_to_fetch(
            session, tenant_id, source, changed_alerts, started - INCIDENT_RECOVERY_WINDOW
        )
    if not wanted:
        return records.UpsertCount(), 0
    found = connector.fetch_incidents(wanted, since=earliest_change)
    with transaction(sessions) as session:
        incidents = records.upsert_incidents(session, tenant_id, source, found.records)
        return incidents, records.quarantine(session, tenant_id, source, found.rejected, started)


def sync_inventory(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector, now: datetime
) -> records.UpsertCount:
    """Bring the EDR's device inventory in (absences count only from a complete inventory)."""
    if Capability.DEVICES not in connector.capabilities:
        return records.UpsertCount()
    batch = connector.fetch_devices()
    with transaction(sessions) as session:
        records.quarantine(session, tenant_id, connector.name, batch.rejected, now)
        counts = records.upsert_devices(session, tenant_id, batch.records, complete=batch.complete)
        # When the whole inventory was last read: what it says of a device is news only
        # after then (an offboarding is verified only by an inventory read after its
        # success). One with unreadable records may have missed the very device: not news.
        if batch.complete:
            records.mark_read(session, tenant_id, records.INVENTORY_STREAM, Stamp.of(now))
        return counts
