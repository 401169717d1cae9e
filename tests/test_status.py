"""`edrtrial status`: the service's health, exit 0 when all is well and 1 with the reasons
when something needs a person; `--json` gives the same facts; the table fits 100 columns."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.cells import cell_len

from edrtrial.cli import common
from edrtrial.cli.main import main
from edrtrial.config import SmtpConfig, load_config
from edrtrial.db import transaction
from edrtrial.errors import TransientError
from edrtrial.ingest import health
from edrtrial.models import Device, ResponseAction, ServiceLock
from edrtrial.notify import outbox
from edrtrial.notify.mail import SmtpTransport
from edrtrial.notify.outbox import DeliveryStats
from edrtrial.service import jobs, ownership, runs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import utcnow

import clock
from sandbox_config import settings, write_config

SAKURA = "sakura-seisakusho"
SCHEDULED = (
    ("outbox", None),
    ("desk", None),
    ("weekly-reports", None),
    ("seat-report", None),
    ("trial-lifecycle", None),
    ("inventory", SAKURA),
    ("poll", SAKURA),
)


class Service:
    """A one-company store whose scheduler beats, every job of it done once."""

    def __init__(self, path: Path, rt: Runtime) -> None:
        self.path = path
        self.rt = rt
        [self.tenant] = rt.tenants()

    owned: ownership.Ownership | None = None

    def beat(self) -> None:
        """The store's lock held (as `serve` holds it for its life), its row's heartbeat
        renewed just now (as `serve` writes it)."""
        if self.owned is None:
            self.owned = ownership.take(self.rt.engine, "desk-01:4242", utcnow())
        with transaction(self.rt.sessions) as session:
            lock = session.get(ServiceLock, "scheduler")
            if lock is None:
                start = utcnow() - timedelta(hours=2)
                session.add(
                    ServiceLock(
                        name="scheduler",
                        holder="desk-01:4242",
                        acquired_at=start,
                        heartbeat_at=utcnow(),
                    )
                )
            else:
                lock.heartbeat_at = utcnow()

    def stop(self) -> None:
        """The service's process ended (its lock went with it), whatever its row says."""
        if self.owned is not None:
            self.owned.release()
            self.owned = None

    def run_job(
        self,
        name: str,
        result: object = None,
        error: Exception | None = None,
        company: str | None = None,
    ) -> None:
        def work() -> object:
            if error is not None:
                raise error
            return result

        if error is None:
            runs.run(self.rt, name, company, work)
        else:
            with pytest.raises(type(error)):
                runs.run(self.rt, name, company, work)

    def run_scheduled(self, *, but: str = "") -> None:
        """Each job the scheduler runs, done once now (all but the one named `but`)."""
        for name, company in SCHEDULED:
            if f"{name}:{company or ''}".rstrip(":") != but:
                self.run_job(name, company=company)

    def status(self, *args: str, code: int) -> Result:
        result = CliRunner().invoke(main, ["--config", str(self.path), "status", *args])
        assert result.exit_code == code, result.output
        return result

    def said(self, code: int) -> str:
        """What `status` printed, its wrapped lines joined again."""
        return " ".join(self.status(code=code).output.split())


@pytest.fixture
def service(tmp_path, now, engine, database_url) -> Iterator[Service]:
    path = write_config(tmp_path / "config.toml", settings(database_url), companies=1)
    rt = Runtime.open(load_config(path))
    found = Service(path, rt)
    found.beat()
    found.run_scheduled(but="outbox")
    found.run_job("outbox", DeliveryStats(sent=2))
    yield found
    found.stop()
    rt.close()


def test_a_healthy_service_exits_0_and_shows_its_scheduler_and_jobs(service):
    output = service.said(0)
    assert "scheduler: desk-01:4242 since" in output
    assert "outbox" in output and "2 sent" in output
    assert "tenants: all polling" in output
    assert "outbox: 0 waiting" in output
    assert "all is well" in output


def test_without_a_running_scheduler_status_exits_1_saying_so(service):
    with clock.travel(utcnow() + timedelta(minutes=5)):
        service.stop()
        output = service.said(1)
    assert "no scheduler running" in output
    assert "needs a person (1):" in output
    assert "start `edrtrial serve`" in output


def test_a_service_killed_a_moment_ago_is_not_running_though_its_heartbeat_is_fresh(service):
    """kill -9 leaves the row's heartbeat fresh for a while; the lock went with the process."""
    service.stop()
    output = service.said(1)
    assert "no scheduler running: the last one (desk-01:4242)" in output
    assert json.loads(service.status("--json", code=1).output)["scheduler_running"] is False


def test_a_service_that_holds_the_store_but_stopped_beating_is_named_not_called_dead(service):
    """A service waiting out a locked store (or stuck) still runs: starting another would be
    refused, so status says what it is, not "start edrtrial serve"."""
    with clock.travel(utcnow() + timedelta(minutes=5)):
        output = service.said(1)
    assert "the scheduler (desk-01:4242) holds the store but has not beaten since" in output
    assert "start `edrtrial serve`" not in output
    assert "(late)" in output


def test_a_parked_tenant_needs_a_person_with_its_reason(service):
    reason = "the client secret of tenant t-1 expired; renew it"
    health.park(service.rt.sessions, service.tenant.id, reason, utcnow())
    output = service.said(1)
    assert f"tenant of {SAKURA} parked since" in output
    assert reason in output


def test_a_tenant_failing_longer_than_the_threshold_needs_a_person(service):
    failure = TransientError("503 Service Unavailable")
    health.failed(service.rt.sessions, service.tenant.id, failure, utcnow(), 30)
    service.status(code=0)  # a short failure is retried alone
    with clock.travel(utcnow() + timedelta(minutes=31)):
        service.beat()
        output = service.said(1)
    assert f"tenant of {SAKURA} failing since" in output and "503" in output


def test_a_job_failing_again_and_again_needs_a_person(service):
    for _ in range(2):
        service.run_job("outbox", error=OSError("relay refused\nthe second line"))
    assert "needs a person" not in service.said(0)
    service.run_job("outbox", error=OSError("relay refused\nthe second line"))
    output = service.said(1)
    assert "job outbox failed 3 time(s) in a row since" in output
    assert "OSError: relay refused" in output and "the second line" not in output
    service.run_job("outbox", DeliveryStats(sent=1))
    assert "all is well" in service.said(0)


def test_an_old_outbox_message_needs_a_person(service):
    with transaction(service.rt.sessions) as session:
        outbox.enqueue(
            session,
            dedupe_key="notice:company:ticket:1",
            kind="company-notice",
            recipient="it@sakura.example.jp",
            subject="s",
            body_text="b",
        )
    assert "outbox: 1 waiting, oldest since" in service.said(0)
    with clock.travel(utcnow() + timedelta(minutes=45)):
        service.beat()
        output = service.said(1)
    assert "outbox: the oldest message (company-notice, mail) has waited since" in output


def test_an_isolation_unconfirmed_past_the_reconciliation_window_needs_a_person(service):
    with transaction(service.rt.sessions) as session:
        device = Device(tenant_id=service.tenant.id, source_id="d-1", name="PC-KEIRI-01")
        session.add(device)
        session.flush()
        session.add(
            ResponseAction(
                dedupe_key="isolate:d-1:1",
                tenant_id=service.tenant.id,
                device_id=device.id,
                kind="isolate",
                status="unconfirmed",
                requested_by="playbook",
                sent_at=utcnow(),
            )
        )
    assert "PC-KEIRI-01" in service.said(0)  # the desk job reconciles it by itself
    with clock.travel(utcnow() + timedelta(minutes=11)):  # past desk.reconcile_minutes
        service.beat()
        output = service.said(1)
    assert f"isolate of PC-KEIRI-01 ({SAKURA}) sent 2026-11-25 10:" in output
    assert "unconfirmed: not confirmed by the EDR; see `edrtrial action list`" in output


def test_json_gives_the_same_facts_with_iso_times(service):
    health.park(service.rt.sessions, service.tenant.id, "consent withdrawn", utcnow())
    data = json.loads(service.status("--json", code=1).output)
    assert data["needs_person"] is True and data["scheduler_running"] is True
    assert data["lease"]["holder"] == "desk-01:4242"
    [job] = [job for job in data["jobs"] if job["name"] == "outbox"]
    assert (job["name"], job["failures"]) == ("outbox", 0)
    assert job["last_success_at"].endswith("+00:00")
    [tenant] = data["tenants"]
    assert (tenant["company_key"], tenant["state"], tenant["reason"]) == (
        SAKURA,
        "parked",
        "consent withdrawn",
    )
    assert tenant["since"].endswith("+00:00")
    assert data["outbox"]["pending"] == 0
    assert data["actions"] == [] and data["offboarding"] == []
    [problem] = data["problems"]
    assert problem.startswith(f"tenant of {SAKURA} parked since 2026-11-25 10:")
    assert problem.endswith(" JST: consent withdrawn")


@pytest.mark.parametrize("columns", [80, 100])
def test_status_fits_the_terminal_and_shows_hostile_reasons_as_text(service, monkeypatch, columns):
    monkeypatch.setattr(common.console, "width", columns)
    reason = "\x1b[2Jbad secret " + "x" * 150
    health.park(service.rt.sessions, service.tenant.id, reason, utcnow())
    service.run_job("weekly-reports", error=RuntimeError("boom " * 40))
    output = service.status(code=1).output
    assert "\x1b" not in output
    assert all(len(line) <= columns for line in output.splitlines()), output
    assert "bad secret" in output


def test_offboarding_in_flight_is_shown_and_a_given_up_message_needs_a_person(service):
    with transaction(service.rt.sessions) as session:
        for n in range(3):
            device = Device(tenant_id=service.tenant.id, source_id=f"d-{n}", name=f"PC-{n}")
            session.add(device)
            session.flush()
            session.add(
                ResponseAction(
                    dedupe_key=f"offboard:d-{n}",
                    tenant_id=service.tenant.id,
                    device_id=device.id,
                    kind="offboard",
                    status="manual" if n else "planned",
                )
            )
        outbox.enqueue(
            session,
            dedupe_key="notice:company:ticket:7",
            kind="company-notice",
            recipient="it@sakura.example.jp",
            subject="s",
            body_text="b",
        )
    output = service.said(0)
    assert f"{SAKURA} manual 2" in output and f"{SAKURA} planned 1" in output
    with socket.socket() as sock:  # a relay that is not there: the one attempt fails
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    relay = SmtpConfig(host="127.0.0.1", port=closed, starttls=False, timeout_seconds=2)
    stats = outbox.deliver_due(
        service.rt.sessions,
        SmtpTransport(relay, None),
        sender="edr@example.jp",
        sender_name="",
        max_attempts=1,
    )
    assert stats.failed == 1
    output = service.said(1)
    assert "outbox: 0 waiting; 1 given up lately" in output
    assert "outbox: 1 message(s) given up in the last 7 days" in output


@pytest.mark.parametrize("columns", [80, 100])
def test_status_fits_the_columns_the_shell_gives_like_every_list(service, columns):
    # `COLUMNS=80 edrtrial status | less`, or a monitor's pipe: the width the lists keep too.
    reason = "クライアントシークレットの有効期限が切れています。" * 4
    health.park(service.rt.sessions, service.tenant.id, reason, utcnow())
    result = CliRunner().invoke(
        main, ["--config", str(service.path), "status"], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert all(cell_len(line) <= columns for line in lines), [
        (cell_len(line), line) for line in lines if cell_len(line) > columns
    ]
    assert reason in "".join(line.strip() for line in lines)  # the reason to act on, whole


def test_a_poll_that_stopped_running_needs_a_person_though_the_scheduler_beats(service):
    # A hung poll: the heartbeat's thread goes on, every other job runs, the poll does not.
    with clock.travel(utcnow() + timedelta(hours=6)):
        service.beat()
        service.run_scheduled(but=f"poll:{SAKURA}")
        output = service.said(1)
        data = json.loads(service.status("--json", code=1).output)
    assert "needs a person (1):" in output
    assert f"poll of {SAKURA} has not run for 6 h (every 30 s)" in output
    [late] = data["overdue"]
    assert (late["name"], late["schedule"]) == (f"poll:{SAKURA}", "every 30 s")
    assert late["last_run_at"].endswith("+00:00")
    service.run_job("poll", company=SAKURA)
    assert "all is well" in service.said(0)


def test_a_job_that_never_ran_since_the_scheduler_started_long_ago_needs_a_person(service):
    with clock.travel(utcnow() + timedelta(minutes=30)):
        service.beat()
        service.run_scheduled(but="desk")
        output = service.said(1)
    # The fixture's desk ran before this scheduler's start: it has not run under it.
    assert "desk has not run for 30 min (every 30 s)" in output


def test_a_fresh_scheduler_start_is_not_overdue(service):
    with clock.travel(utcnow() + timedelta(hours=6)):
        with transaction(service.rt.sessions) as session:
            lock = session.get_one(ServiceLock, "scheduler")
            lock.acquired_at, lock.heartbeat_at = utcnow() - timedelta(minutes=2), utcnow()
        assert "all is well" in service.said(0)


def test_a_daily_job_missed_by_a_running_scheduler_needs_a_person(service):
    # The scheduler has run since the day before; today's 06:00 run never came.
    with clock.travel(utcnow() + timedelta(days=1)):
        service.beat()
        service.run_scheduled(but="trial-lifecycle")
        output = service.said(1)
    assert "trial-lifecycle has not run for 24 h (daily at 06:00 JST)" in output


def test_a_missed_weekly_seat_report_needs_a_person(service):
    # The scheduler has run for a week; the secretariat's Monday mail never went.
    with clock.travel(utcnow() + timedelta(days=8)):
        service.beat()
        service.run_scheduled(but="seat-report")
        output = service.said(1)
    assert "seat-report has not run for" in output and "(weekly, mon 08:30 JST)" in output


def test_a_parked_tenant_s_poll_still_runs_and_is_not_overdue(service):
    health.park(service.rt.sessions, service.tenant.id, "consent withdrawn", utcnow())
    with clock.travel(utcnow() + timedelta(hours=6)):
        service.beat()
        service.run_scheduled(but=f"poll:{SAKURA}")
        runs.run(service.rt, "poll", SAKURA, lambda: jobs.poll(service.rt, SAKURA))
        output = service.said(1)
    assert f"tenant of {SAKURA} parked since" in output
    assert "has not run" not in output and "needs a person (1):" in output


def test_a_failed_poll_by_hand_is_over_once_the_scheduler_s_poll_succeeds(service):
    for _ in range(3):  # `run-job poll`: every company, recorded under none
        service.run_job("poll", error=OSError("database is locked"))
    assert "job poll failed 3 time(s) in a row" in service.said(1)
    service.run_job("poll", company=SAKURA)  # the scheduler's next poll of a company
    assert "all is well" in service.said(0)


def test_jobs_and_tenants_of_a_company_no_longer_configured_are_not_problems(service):
    for _ in range(3):
        service.run_job("poll", error=OSError("tenant gone"), company="old-company")
    data = json.loads(service.status("--json", code=0).output)
    assert "old-company" not in json.dumps(data)
    assert data["needs_person"] is False


@pytest.mark.parametrize("columns", [80, 100])
def test_status_wide_shows_every_cell_whole_like_the_lists(service, columns):
    reason = "the client secret of tenant t-1 expired on 2026-11-20; renew it " + "x" * 60
    error = "relay refused the sender edr@example.jp: 550 5.7.1 not allowed " + "y" * 60
    health.park(service.rt.sessions, service.tenant.id, reason, utcnow())
    for _ in range(3):
        service.run_job("outbox", error=OSError(error))
    env = {"COLUMNS": str(columns)}
    args = ["--config", str(service.path), "status"]
    cut = CliRunner().invoke(main, args, env=env)
    assert cut.exit_code == 1
    assert all(cell_len(line) <= columns for line in cut.output.splitlines())
    assert not any(f"OSError: {error}" in line for line in cut.output.splitlines())
    result = CliRunner().invoke(main, [*args, "--wide"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    [row] = [line for line in lines if line.startswith(SAKURA)]
    assert row.rstrip().endswith(reason)  # the tenant's row, its reason whole on its line
    [job] = [line for line in lines if line.startswith("outbox ")]
    assert job.rstrip().endswith(f"OSError: {error}")
    assert "- job outbox failed 3 time(s) in a row since" in result.output
