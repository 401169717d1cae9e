"""Properties of ingestion.

- Whatever the interleaving of updates, polls and crashed polls, one clean poll later the
  store holds exactly the source's alerts, each once, each at its latest version (updates as
  little as 100 ns apart included).
- Microsoft's 7-digit stamps: parsing and formatting round-trip exactly, stamps order as the
  instants they name, and upserts applied in any order keep the newest version.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from edrtrial.connectors.base import AlertRecord, DeviceRecord, IncidentRecord
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.ingest import records
from edrtrial.ingest.polling import ingest_tenant
from edrtrial.models import Alert, Base, Company, Device, Incident, Tenant
from edrtrial.timeutil import Stamp

from fakes import Crash, FakeConnector

OVERLAP = timedelta(minutes=2)
T0 = datetime(2026, 11, 1, tzinfo=UTC)

# An operation: ("new"|"update", lag seconds within the overlap) or ("poll", crash page|None).
operations = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["new", "update"]), st.integers(0, int(OVERLAP.seconds))),
        st.tuples(st.just("poll"), st.one_of(st.none(), st.integers(0, 3))),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.integers(1, 4), st.randoms(use_true_random=False))
def test_stored_set_equals_source_set(ops, page_size, rnd):
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        company = Company(key="acme", name="Acme", contact_email="a@example.jp")
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector="fake", external_id="t")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id

    source = FakeConnector(page_size=page_size, overlap=OVERLAP)
    clock = T0
    for op, arg in ops:
        clock += timedelta(seconds=30)
        if op == "new":
            n = len(source.alerts)
            source.alerts[f"a{n}"] = AlertRecord(
                source_id=f"a{n}",
                title=f"alert {n}",
                severity="low",
                status="new",
                last_update_at=Stamp.of(clock - timedelta(seconds=arg)),
                created_at=clock,
            )
        elif op == "update" and source.alerts:
            key = rnd.choice(sorted(source.alerts))
            old = source.alerts[key]
            # The source stamps the change up to OVERLAP late, never before the old version
            # and at least 100 ns (one tick) after it.
            stamp = max(
                Stamp.of(clock - timedelta(seconds=arg)), Stamp(old.last_update_at.ticks + 1)
            )
            source.alerts[key] = dataclasses.replace(
                old, status=f"s{stamp.ticks}", last_update_at=stamp
            )
        elif op == "poll":
            source.crash_after_pages = arg
            try:
                ingest_tenant(sessions, tenant_id, source, now=clock)
            except Crash:
                pass
    source.crash_after_pages = None
    ingest_tenant(sessions, tenant_id, source, now=clock + timedelta(seconds=30))

    with sessions() as session:
        stored = {
            a.source_id: (a.status, a.last_update_stamp) for a in session.scalars(select(Alert))
        }
    assert stored == {k: (a.status, a.last_update_at) for k, a in source.alerts.items()}
    engine.dispose()


# --- Microsoft's 7-digit stamps ----------------------------------------------------------------

TICKS = 10**7  # 100-ns ticks per second
EARLIEST = Stamp.of(datetime(1990, 1, 1, tzinfo=UTC)).ticks
LATEST = Stamp.of(datetime(2100, 1, 1, tzinfo=UTC)).ticks
offsets = st.one_of(st.none(), st.integers(-14 * 60, 14 * 60))  # minutes east of UTC; None: Z
ticks = st.integers(EARLIEST, LATEST)


def written(instant: int, offset: int | None, digits: int = 7) -> str:
    """An instant (in ticks) as an API writes it, worked out without `Stamp`: local wall time,
    `digits` fractional digits, then `Z` or the offset."""
    seconds, fraction = divmod(instant, TICKS)
    wall = datetime(1970, 1, 1) + timedelta(seconds=seconds, minutes=offset or 0)
    hours, minutes = divmod(abs(offset or 0), 60)
    zone = "Z" if offset is None else f"{'-' if offset < 0 else '+'}{hours:02d}:{minutes:02d}"
    shown = f".{fraction:07d}"[: digits + 1] if digits else ""
    return f"{wall:%Y-%m-%dT%H:%M:%S}{shown}{zone}"


@given(ticks)
def test_a_7_digit_stamp_round_trips_exactly(instant):
    text = written(instant, None)
    assert Stamp.from_iso(text).iso() == text
    assert Stamp.from_iso(text).ticks == instant


CALENDAR = st.integers(  # every instant a datetime can hold, to the 100 ns
    Stamp.of(datetime.min.replace(tzinfo=UTC)).ticks,
    Stamp.of(datetime.max.replace(tzinfo=UTC)).ticks + 9,
)


@given(CALENDAR)
def test_a_stamp_of_any_year_is_written_so_that_it_reads_back(instant):
    text = Stamp(instant).iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", text), text
    assert Stamp.from_iso(text).ticks == instant


@given(ticks, offsets, st.integers(0, 7))
def test_any_offset_and_0_to_7_digits_name_the_same_instant(instant, offset, digits):
    cut = instant - instant % 10 ** (7 - digits)  # fewer digits name an earlier tick
    assert Stamp.from_iso(written(instant, offset, digits)).ticks == cut


@given(
    ticks,
    st.one_of(ticks, st.integers(-20, 20)),  # another instant, or one a few ticks away
    offsets,
    offsets,
)
def test_stamps_order_as_the_instants_they_name(first, other, first_offset, other_offset):
    second = other if other > 20 else first + other
    a = Stamp.from_iso(written(first, first_offset))
    b = Stamp.from_iso(written(second, other_offset))
    assert (a < b, a == b, a > b) == (first < second, first == second, first > second)


def _fresh_store():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        company = Company(key="acme", name="Acme", contact_email="a@example.jp")
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector="fake", external_id="t")
        session.add(tenant)
        session.flush()
        return engine, sessions, tenant.id


# Versions of one record: (ticks after a base instant, a label). A narrow range makes ties and
# neighbours 100 ns apart common.
versions = st.lists(
    st.tuples(st.integers(0, 6), st.text("abc", min_size=1, max_size=3)), min_size=1, max_size=8
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["alert", "incident"]), versions.flatmap(st.permutations))
def test_upserts_in_any_order_keep_the_newest_version_and_a_tie_keeps_the_stored_one(kind, order):
    base = Stamp.of(T0).ticks
    engine, sessions, tenant_id = _fresh_store()

    def record(step: tuple[int, str]) -> AlertRecord | IncidentRecord:
        offset, label = step
        make = AlertRecord if kind == "alert" else IncidentRecord
        return make(
            source_id="x1",
            title="t",
            severity="low",
            status=label,
            last_update_at=Stamp(base + offset),
        )

    def upsert(step: tuple[int, str]) -> records.UpsertCount:
        with transaction(sessions) as session:
            if kind == "alert":
                return records.upsert_alerts(session, tenant_id, "fake", [record(step)])
            return records.upsert_incidents(session, tenant_id, "fake", [record(step)])

    kept = order[0]
    for step in order:
        upsert(step)
        if step[0] > kept[0]:  # strictly newer replaces; a tie leaves the stored one
            kept = step
    again = upsert(kept)  # the same update twice changes nothing

    model = Alert if kind == "alert" else Incident
    with sessions() as session:
        row = session.scalars(select(model)).one()
        assert (row.status, row.last_update_stamp) == (kept[1], Stamp(base + kept[0]))
    assert (again.inserted, again.updated) == (0, 0)
    engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 6), min_size=1, max_size=8))
def test_a_device_s_last_seen_never_goes_back_whatever_order_inventories_arrive_in(seen):
    base = Stamp.of(T0).ticks
    engine, sessions, tenant_id = _fresh_store()
    for n, offset in enumerate(seen):
        device = DeviceRecord(source_id="d1", name=f"PC-{n}", last_seen=Stamp(base + offset))
        with transaction(sessions) as session:
            records.upsert_devices(session, tenant_id, [device])
    newest = max(seen)
    latest_newest = max(n for n, offset in enumerate(seen) if offset == newest)
    with sessions() as session:
        row = session.scalars(select(Device)).one()
        # An equal stamp is applied (tags and health change without the device reporting).
        assert (row.last_seen_stamp, row.name) == (Stamp(base + newest), f"PC-{latest_newest}")
    engine.dispose()
