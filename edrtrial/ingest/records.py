"""Repository functions: all reads and writes of ingested records go through here.

Upserts are keyed by (tenant, source, source id), so fetching a record twice never stores
it twice. Nothing here commits: the caller owns the transaction.

An EDR's text has no length limit, the store's columns have: every value a connector sent is
cut to its column's width on the way in (`fitted`), ids included and the same way in every
lookup, and the record's `raw` keeps it whole. A value too long for its column would
otherwise fail the page's transaction on PostgreSQL at every poll.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import String, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edrtrial.connectors.base import AlertRecord, DeviceRecord, IncidentRecord, Rejected
from edrtrial.models import (
    Alert,
    Base,
    Device,
    Incident,
    PollCursor,
    QuarantinedRecord,
    Tenant,
)
from edrtrial.timeutil import Stamp, as_utc


@dataclass(frozen=True, slots=True)
class UpsertCount:
    """How many rows an upsert inserted and how many it changed."""

    inserted: int = 0
    updated: int = 0
    changed: frozenset[str] = frozenset()  # source ids inserted or updated

    def __add__(self, other: UpsertCount) -> UpsertCount:
        return UpsertCount(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.changed | other.changed,
        )


@cache
def _widths(model: type[Base]) -> dict[str, int]:
    """The width of each of the model's bounded text columns (String(n)), by attribute."""
    return {
        column.key: column.type.length
        for column in model.__table__.columns
        if isinstance(column.type, String) and column.type.length is not None
    }


def fitted(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """`values` for a row of `model`, each text value cut to its column's width."""
    widths = _widths(model)
    return {
        key: value[: widths[key]] if isinstance(value, str) and key in widths else value
        for key, value in values.items()
    }


def _fit(model: type[Base], key: str, value: str) -> str:
    """One text value as it is stored in `model`'s column `key` (and so looked up)."""
    width = _widths(model).get(key)
    return value if width is None else value[:width]


def _jsonable(raw: Any) -> dict[str, Any]:
    return dict(raw)


def _alert_fields(record: AlertRecord) -> dict[str, Any]:
    return {
        "incident_source_id": record.incident_source_id,
        "title": record.title,
        "description": record.description,
        "severity": record.severity,
        "status": record.status,
        "category": record.category,
        "detection_source": record.detection_source,
        "service_source": record.service_source,
        "mitre_techniques": list(record.mitre_techniques),
        "device_source_ids": [d.source_id for d in record.devices],
        "device_names": [d.name for d in record.devices],
        "evidence": record.evidence.as_json(),
        "created_at": record.created_at,
        "last_update_at": record.last_update_at.datetime,
        "last_update_stamp": record.last_update_at,
        "raw": _jsonable(record.raw),
    }


def _incident_fields(record: IncidentRecord) -> dict[str, Any]:
    return {
        "title": record.title,
        "severity": record.severity,
        "status": record.status,
        "created_at": record.created_at,
        "last_update_at": record.last_update_at.datetime,
        "last_update_stamp": record.last_update_at,
        "raw": _jsonable(record.raw),
    }


def _stamp_of(exact: Stamp | None, shown: datetime | None) -> Stamp | None:
    """A row's exact stamp; from its datetime for a row written before stamps were kept."""
    if exact is not None or shown is None:
        return exact
    return Stamp.of(shown)


RETRIAGE_ON = (
    "severity",
    "incident_source_id",
    "title",
    "category",
    "mitre_techniques",
    "device_source_ids",
    "evidence",
)
"""Alert fields a playbook decides on: a change sends the alert through triage again."""


_UNREAD = object()


def _first_poll_done(session: Session, tenant_id: int) -> datetime | None:
    return session.scalar(select(Tenant.first_poll_done_at).where(Tenant.id == tenant_id))


def _still_history(row: Alert, status: str, first_poll_done: datetime | None | object) -> bool:
    """Whether an alert its tenant's first poll kept as history (resolved in Defender, no
    ticket) is still resolved: Defender may amend it (merge it into another incident, add
    evidence) weeks later, and that must not open a ticket and mail the company about it.
    A test the playbook suppressed is triaged again as ever: a test that turns out to be an
    attack gets its ticket, resolved in Defender or not."""
    resolved = "resolved"
    return (
        isinstance(first_poll_done, datetime)
        and row.ticket_id is None
        and not row.suppressed_reason
        and row.triaged_at is not None
        and as_utc(row.triaged_at) <= as_utc(first_poll_done)
        and (row.status or "").casefold() == resolved
        and (status or "").casefold() == resolved
    )


def _reopened(row: Alert, status: str) -> bool:
    """Whether Defender reopened an alert that has no ticket: one a first poll kept as history
    (resolved in Defender then) must now be triaged like any open alert."""
    resolved = "resolved"
    return (
        row.ticket_id is None
        and (row.status or "").casefold() == resolved
        and (status or "").casefold() != resolved
    )


Sourced = TypeVar("Sourced", Alert, Incident)
Record = TypeVar("Record", AlertRecord, IncidentRecord)


def _upsert(
    session: Session,
    model: type[Sourced],
    tenant_id: int,
    source: str,
    records: Sequence[Record],
    fields: Callable[[Record], dict[str, Any]],
) -> UpsertCount:
    """Insert new rows, update rows whose source copy is newer; one query for the lookup.

    Newer is decided on the exact stamps (100 ns): an update 100 ns after the stored one is
    applied, an equal or older one leaves the stored row as it is.
    """
    latest: dict[str, Record] = {}
    for record in records:  # the same id twice in one batch: keep the newest
        source_id = _fit(model, "source_id", record.source_id)
        seen = latest.get(source_id)
        if seen is None or record.last_update_at >= seen.last_update_at:
            latest[source_id] = record
    if not latest:
        return UpsertCount()
    existing = {
        row.source_id: row
        for row in session.scalars(
            select(model).where(
                model.tenant_id == tenant_id,
                model.source == source,
                model.source_id.in_(list(latest)),
            )
        )
    }
    inserted = updated = 0
    first_poll_done: datetime | None | object = _UNREAD
    changed: set[str] = set()
    new_rows: list[dict[str, Any]] = []
    for source_id, record in latest.items():
        row = existing.get(source_id)
        if row is None:
            new_rows.append(
                {"tenant_id": tenant_id, "source": source, "source_id": source_id}
                | fitted(model, fields(record))
            )
            inserted += 1
            changed.add(source_id)
        elif (
            stored := _stamp_of(row.last_update_stamp, row.last_update_at)
        ) is None or record.last_update_at > stored:
            changes = fitted(model, fields(record))
            if isinstance(row, Alert) and (
                any(getattr(row, key) != changes[key] for key in RETRIAGE_ON)
                or _reopened(row, changes["status"])
            ):
                if first_poll_done is _UNREAD:
                    first_poll_done = _first_poll_done(session, tenant_id)
                if not _still_history(row, changes["status"], first_poll_done):
                    row.triaged_at = None  # what the playbook decided on has changed
            for key, value in changes.items():
                setattr(row, key, value)
            updated += 1
            changed.add(source_id)
    session.flush()
    if new_rows:  # one executemany for the page's new rows, not one ORM insert each
        session.execute(insert(model), new_rows)  # Core applies column defaults
    return UpsertCount(inserted, updated, frozenset(changed))


def upsert_alerts(
    session: Session, tenant_id: int, source: str, records: Sequence[AlertRecord]
) -> UpsertCount:
    """Store alerts by (tenant, source, id); a newer last-update time wins, an older is ignored."""
    return _upsert(session, Alert, tenant_id, source, records, _alert_fields)


def upsert_incidents(
    session: Session, tenant_id: int, source: str, records: Sequence[IncidentRecord]
) -> UpsertCount:
    """Store incidents by (tenant, source, id); a newer last-update time wins."""
    return _upsert(session, Incident, tenant_id, source, records, _incident_fields)


def upsert_devices(
    session: Session, tenant_id: int, records: Sequence[DeviceRecord], *, complete: bool = True
) -> UpsertCount:
    """Bring the inventory in; a device missing from it stays stored (history), marked absent.

    Only a complete inventory can say a device is absent: when some records could not be
    read, nothing is marked absent (an absent device would escape offboarding). A device
    whose last-seen stamp is older than the stored one (a lagging copy of the inventory) is
    present but not applied, so last seen never goes back; an equal one is applied, because
    tags and health change without the device reporting. A copy without a first or last seen
    is applied but keeps the stored ones: "never seen" would silence the warning about a
    device that stopped reporting, and the offboarding check that reads it.
    """
    existing = {
        row.source_id: row
        for row in session.scalars(select(Device).where(Device.tenant_id == tenant_id))
    }
    inserted = updated = 0
    present = set()
    for record in records:
        source_id = _fit(Device, "source_id", record.source_id)
        present.add(source_id)
        fields = {
            "name": record.name,
            "os_platform": record.os_platform,
            "os_version": record.os_version,
            "health_status": record.health_status,
            "onboarding_status": record.onboarding_status,
            "risk_score": record.risk_score,
            "first_seen": record.first_seen,
            "last_seen": None if record.last_seen is None else record.last_seen.datetime,
            "last_seen_stamp": record.last_seen,
            "tags": list(record.tags),
            "raw": _jsonable(record.raw),
            "in_inventory": True,
        }
        fields = fitted(Device, fields)
        row = existing.get(source_id)
        if row is None:
            row = Device(tenant_id=tenant_id, source_id=source_id, **fields)
            session.add(row)
            existing[source_id] = row
            inserted += 1
        elif _older(record.last_seen, _stamp_of(row.last_seen_stamp, row.last_seen)):
            row.in_inventory = True
        else:
            for key, value in fields.items():
                if value is None and key in _KEPT_WHEN_ABSENT:
                    continue
                setattr(row, key, value)
            updated += 1
    for source_id, row in existing.items():
        if complete and source_id not in present and row.in_inventory:
            row.in_inventory = False
    session.flush()
    return UpsertCount(inserted, updated)


_KEPT_WHEN_ABSENT = frozenset({"first_seen", "last_seen", "last_seen_stamp"})
"""Device fields a copy without them leaves as stored: what was seen stays seen."""


def _older(seen: Stamp | None, stored: Stamp | None) -> bool:
    return seen is not None and stored is not None and seen < stored


def device_for_evidence(session: Session, tenant_id: int, source_id: str, name: str) -> Device:
    """The stored device an alert names; created from the evidence if the inventory lags."""
    source_id, name = _fit(Device, "source_id", source_id), _fit(Device, "name", name)
    query = select(Device).where(Device.tenant_id == tenant_id, Device.source_id == source_id)
    device = session.scalar(query)
    if device is not None:
        return device
    try:
        with session.begin_nested():  # the inventory may insert the same device meanwhile
            device = Device(tenant_id=tenant_id, source_id=source_id, name=name)
            session.add(device)
    except IntegrityError:
        device = session.scalars(query).one()
    return device


INVENTORY_STREAM = "inventory"
"""The cursor that holds when the tenant's device inventory was last read."""


def get_cursor(session: Session, tenant_id: int, stream: str) -> Stamp | None:
    """Where the tenant's stream was last fully ingested (to the 100 ns), or None before the
    first poll."""
    found = session.execute(
        select(PollCursor.position_stamp, PollCursor.position).where(
            PollCursor.tenant_id == tenant_id, PollCursor.stream == stream
        )
    ).first()
    return None if found is None else _stamp_of(*found)


def set_cursor(session: Session, tenant_id: int, stream: str, position: Stamp) -> None:
    """Move the stream's cursor forward; call it in the transaction that stores the rows it
    covers."""
    cursor = session.scalar(
        select(PollCursor).where(PollCursor.tenant_id == tenant_id, PollCursor.stream == stream)
    )
    if cursor is None:
        cursor = PollCursor(tenant_id=tenant_id, stream=stream)
        session.add(cursor)
    stored = _stamp_of(cursor.position_stamp, cursor.position)
    if stored is None or position > stored:
        cursor.position, cursor.position_stamp = position.datetime, position
    session.flush()


def mark_read(session: Session, tenant_id: int, stream: str, at: Stamp) -> None:
    """Record when a whole stream (the inventory) was last read: unlike a cursor it is
    overwritten, so one read on a clock that ran ahead does not stand for later ones."""
    cursor = session.scalar(
        select(PollCursor).where(PollCursor.tenant_id == tenant_id, PollCursor.stream == stream)
    )
    if cursor is None:
        cursor = PollCursor(tenant_id=tenant_id, stream=stream)
        session.add(cursor)
    cursor.position, cursor.position_stamp = at.datetime, at
    session.flush()


def quarantine(
    session: Session, tenant_id: int, source: str, rejected: Sequence[Rejected], now: datetime
) -> int:
    """Keep records the connector could not map, once each, with the latest reason."""
    for item in rejected:
        # A record without an id is keyed by its content, so a repeat is still one row.
        source_id = (
            _fit(QuarantinedRecord, "source_id", item.source_id)
            or "sha256:"
            + hashlib.sha256(
                json.dumps(item.raw, sort_keys=True, default=str).encode()
            ).hexdigest()[:40]
        )
        row = session.scalar(
            select(QuarantinedRecord).where(
                QuarantinedRecord.tenant_id == tenant_id,
                QuarantinedRecord.source == source,
                QuarantinedRecord.kind == item.kind,
                QuarantinedRecord.source_id == source_id,
            )
        )
        if row is None:
            session.add(
                QuarantinedRecord(
                    tenant_id=tenant_id,
                    source=source,
                    kind=item.kind,
                    source_id=source_id,
                    reason=item.reason,
                    raw=dict(item.raw),
                    first_seen=now,
                    last_seen=now,
                )
            )
        else:
            row.reason, row.raw, row.last_seen = item.reason, dict(item.raw), now
            row.times_seen += 1
    session.flush()
    return len(rejected)


def incidents_to_fetch(
    session: Session,
    tenant_id: int,
    source: str,
    changed_alert_ids: Sequence[str],
    recent_since: datetime,
) -> list[str]:
    """Incidents to (re)read: those of alerts that just changed, and any recent one missing."""
    wanted: set[str] = set()
    if changed_alert_ids:
        wanted.update(
            i
            for i in session.scalars(
                select(Alert.incident_source_id).where(
                    Alert.tenant_id == tenant_id,
                    Alert.source == source,
                    Alert.source_id.in_(list(changed_alert_ids)),
                    Alert.incident_source_id.is_not(None),
                )
            )
            if i
        )
    # Alerts stored by a poll that died before reading their incident (crash recovery).
    known = select(Incident.id).where(
        Incident.tenant_id == tenant_id,
        Incident.source == source,
        Incident.source_id == Alert.incident_source_id,
    )
    missing = select(Alert.incident_source_id).where(
        Alert.tenant_id == tenant_id,
        Alert.source == source,
        Alert.incident_source_id.is_not(None),
        Alert.ingested_at >= recent_since,
        ~known.exists(),
    )
    wanted.update(i for i in session.scalars(missing.distinct()) if i)
    return sorted(wanted)
