"""Property: whatever the interleaving of updates, polls and crashed polls, one clean poll
later the store holds exactly the source's alerts, each once, each at its latest version."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from edrtrial.connectors.base import AlertRecord
from edrtrial.db import make_engine, make_sessions, transaction
from edrtrial.ingest.polling import ingest_tenant
from edrtrial.models import Alert, Base, Company, Tenant

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
                last_update_at=clock - timedelta(seconds=arg),
                created_at=clock,
            )
        elif op == "update" and source.alerts:
            key = rnd.choice(sorted(source.alerts))
            old = source.alerts[key]
            # The source stamps the change up to OVERLAP late, never before the old version.
            stamp = max(clock - timedelta(seconds=arg), old.last_update_at + timedelta(seconds=1))
            source.alerts[key] = dataclasses.replace(
                old, status=f"s{stamp.timestamp():.0f}", last_update_at=stamp
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
        stored = {a.source_id: (a.status, a.last_update_at) for a in session.scalars(select(Alert))}
    assert stored == {k: (a.status, a.last_update_at) for k, a in source.alerts.items()}
    engine.dispose()
