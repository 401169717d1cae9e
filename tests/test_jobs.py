"""Polling follows the coordinator contract: Retry-After is obeyed, a failing tenant backs
off (circuit breaker) without slowing the others, and one success resets it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy.exc import DataError

from edrtrial.config import load_config
from edrtrial.connectors.base import ActionKind, AlertRecord
from edrtrial.db import transaction
from edrtrial.devices import actions
from edrtrial.errors import TransientError
from edrtrial.ingest import health
from edrtrial.models import Device, ResponseAction
from edrtrial.programme import trials
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import Stamp, jst_date

from fakes import FakeConnector, HandClock
from sandbox_config import settings, write_config


class Throttled(FakeConnector):
    """Answers like a throttled tenant until told otherwise."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.calls = 0
        self.healthy = False

    def fetch_alerts(self, since):
        self.calls += 1
        if not self.healthy:
            raise TransientError("429 Too Many Requests", retry_after=self.retry_after)
        return super().fetch_alerts(since)


@pytest.fixture
def runtime(tmp_path, now, engine, database_url):
    path = write_config(tmp_path / "config.toml", settings(database_url))
    clock = HandClock(now)
    rt = Runtime.open(load_config(path), clock=clock)
    yield rt, clock
    rt.close()


def install(rt: Runtime, key: str, connector: FakeConnector) -> None:
    [tenant] = rt.tenants(key)
    rt._connectors[tenant.id] = connector


def test_retry_after_is_obeyed_and_the_other_tenants_go_on(runtime):
    rt, clock = runtime
    throttled = Throttled(retry_after=120)
    healthy = FakeConnector()
    healthy.alerts["a1"] = AlertRecord(
        source_id="a1",
        title="x",
        severity="low",
        status="new",
        last_update_at=Stamp.of(clock.now),
        created_at=clock.now,
    )
    install(rt, "sakura-seisakusho", throttled)
    install(rt, "midori-shoji", healthy)
    install(rt, "aozora-design", FakeConnector())

    outcomes = {o.company_key: o for o in jobs.poll(rt)}
    assert "next try after" in outcomes["sakura-seisakusho"].error
    assert outcomes["midori-shoji"].new_alerts == 1 and not outcomes["midori-shoji"].error

    clock.now += timedelta(seconds=60)  # inside Retry-After: not even asked
    assert "waiting until" in jobs.poll(rt, "sakura-seisakusho")[0].error
    assert throttled.calls == 1

    clock.now += timedelta(seconds=61)
    throttled.healthy = True
    assert jobs.poll(rt, "sakura-seisakusho")[0].error == ""
    assert throttled.calls == 2
    [tenant] = rt.tenants("sakura-seisakusho")
    assert (tenant.state, tenant.not_before) == ("active", None)


def test_repeated_failures_open_the_breaker_with_growing_pauses(runtime):
    rt, clock = runtime
    failing = Throttled(retry_after=None)
    install(rt, "sakura-seisakusho", failing)
    pauses = []
    for _ in range(5):
        jobs.poll(rt, "sakura-seisakusho")
        [tenant] = rt.tenants("sakura-seisakusho")
        pauses.append(None if tenant.not_before is None else tenant.not_before - clock.now)
        clock.now = tenant.not_before or clock.now
    assert pauses[:2] == [None, None]  # the first failures retry at the next poll
    assert pauses[2] < pauses[3] < pauses[4] <= health.BREAKER_MAX
    assert failing.calls == 5
    assert rt.tenants("sakura-seisakusho")[0].state == "failing"


def test_the_desk_job_does_not_send_an_isolation_planned_before_the_trial_ended(runtime):
    rt, clock = runtime
    [sakura] = rt.tenants("sakura-seisakusho")
    connector = FakeConnector(tenant_id=sakura.external_id)
    install(rt, "sakura-seisakusho", connector)
    with transaction(rt.sessions) as session:
        device = Device(tenant_id=sakura.id, source_id="dev1", name="pc-1", in_inventory=True)
        session.add(device)
        session.flush()
        action = actions.plan(
            session, device, ActionKind.ISOLATE, actor="playbook", at=clock.now
        ).id
        trial = trials.trial_of_tenant(session, sakura.id)
        assert trial is not None
    clock.now += timedelta(days=(trial.ends_on - jst_date(clock.now)).days + 1)
    assert jobs.desk(rt).actions_sent == 0
    assert connector.started == []
    with rt.sessions() as session:
        cancelled = session.get_one(ResponseAction, action)
        assert cancelled.status == "cancelled"
        assert f"trial ended {trial.ends_on.isoformat()}" in cancelled.detail


class StoreRefuses(FakeConnector):
    """A tenant whose records the store refuses (PostgreSQL: a value too long for its column)."""

    def fetch_alerts(self, since):
        raise DataError(
            "INSERT INTO device ...\n[parameters: ...]",
            {},
            Exception("value too long for type character varying(255)"),
        )

    def fetch_devices(self):
        raise RuntimeError("device page\nwith a second line")


def healthy_with_one_alert(at: datetime) -> FakeConnector:
    connector = FakeConnector()
    connector.alerts["a1"] = AlertRecord(
        source_id="a1",
        title="x",
        severity="low",
        status="new",
        last_update_at=Stamp.of(at),
        created_at=at,
    )
    return connector


def test_an_unexpected_error_fails_that_tenant_and_the_others_are_polled(runtime, caplog):
    """The tenants are polled in parallel: one tenant's error must not end the others'."""
    rt, clock = runtime
    install(rt, "sakura-seisakusho", StoreRefuses())
    install(rt, "midori-shoji", healthy_with_one_alert(clock.now))
    install(rt, "aozora-design", FakeConnector())

    with caplog.at_level(logging.INFO):
        outcomes = {o.company_key: o for o in jobs.poll(rt)}

    assert "DataError" in outcomes["sakura-seisakusho"].error
    assert outcomes["midori-shoji"].new_alerts == 1 and not outcomes["midori-shoji"].error
    [sakura] = rt.tenants("sakura-seisakusho")
    assert sakura.state == "failing"
    said = [r for r in caplog.records if r.levelno >= logging.WARNING and "DataError" in r.message]
    assert said and all("\n" not in r.getMessage() and not r.exc_info for r in said), said


def test_an_unexpected_error_in_the_inventory_fails_that_tenant_only(runtime):
    rt, clock = runtime
    install(rt, "sakura-seisakusho", StoreRefuses())
    midori = FakeConnector()
    install(rt, "midori-shoji", midori)
    install(rt, "aozora-design", FakeConnector())

    jobs.inventory(rt)

    states = {t.company_key: t.state for t in rt.tenants()}
    assert states == {
        "aozora-design": "active",
        "midori-shoji": "active",
        "sakura-seisakusho": "failing",
    }
