"""The whole flow against the sandbox: poll → tickets, notices, seats, report, offboarding."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from edrtrial.cli.main import main
from edrtrial.db import make_engine, make_sessions
from edrtrial.models import Alert, Base, Device, OutboxMessage, ResponseAction, Tenant, Ticket
from edrtrial.programme.seats import seat_counts
from edrtrial.sandbox import SandboxServer
from edrtrial.timeutil import jst_date, parse_iso

import clock
from sandbox_config import sample_world, sandbox_config, serving

SAKURA, MIDORI, AOZORA = (f"5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c0{n}" for n in (1, 2, 3))
KEYS = {SAKURA: "sakura-seisakusho", MIDORI: "midori-shoji", AOZORA: "aozora-design"}


@pytest.fixture
def sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:
    """The sandbox, its data made at the test's now (the sample trials are dated around it)."""
    with serving(sample_world(11, actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


def run(config: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def mails(folder: Path) -> list[EmailMessage]:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted(folder.glob("*.eml"))
    ]


def test_a_poll_cycle_gives_tickets_notices_seats_report_and_offboarding(
    tmp_path, now, sandbox, database_url
):
    config = sandbox_config(tmp_path, sandbox, database_url)
    world = sandbox.world
    run(config, "db", "upgrade")
    run(config, "poll")

    sessions = make_sessions(make_engine(database_url))
    with sessions() as session:
        # Every alert the sandbox holds is stored exactly once.
        for tenant_id in KEYS:
            truth = {a["id"] for a in world.alerts(tenant_id)}
            stored = session.scalars(
                select(Alert.source_id)
                .join(Tenant, Alert.tenant_id == Tenant.id)
                .where(Tenant.external_id == tenant_id)
            ).all()
            assert sorted(stored) == sorted(truth)

        # Each high-severity incident became exactly one P1 ticket holding all its alerts.
        highs = [a for t in KEYS for a in world.alerts(t) if a["severity"] == "high"]
        assert highs, "the sandbox starts with high-severity incidents"
        for alert in highs:
            row = session.scalar(select(Alert).where(Alert.source_id == alert["id"]))
            assert row is not None and row.ticket is not None
            assert row.ticket.priority == "P1"
            assert row.ticket.correlation_key == f"incident:{alert['incidentId']}"
        incidents = {a["incidentId"] for a in highs}
        p1 = session.scalars(select(Ticket).where(Ticket.priority == "P1")).all()
        assert {t.correlation_key for t in p1} >= {f"incident:{i}" for i in incidents}

        # Detection tests open no ticket and mark their devices as verified.
        tests = session.scalars(select(Alert).where(Alert.title.startswith("[Test Alert]"))).all()
        assert tests and all(a.ticket_id is None for a in tests)
        assert all(a.suppressed_reason == "detection-test" for a in tests)
        tested = {d for a in tests for d in a.device_source_ids}
        verified = set(
            session.scalars(select(Device.source_id).where(Device.detection_test_at.is_not(None)))
        )
        assert tested <= verified

        outbox_before = session.scalar(select(func.count(OutboxMessage.id)))

    # The desk and each affected company got their notice, in its language.
    sent = mails(tmp_path / "mail")
    desk = [m for m in sent if m["To"] == "desk@example.jp"]
    assert len(desk) >= len(incidents)
    sakura = [m for m in sent if m["To"] == "it@sakura.example.jp"]
    assert sakura and "検知" in sakura[0]["Subject"] + sakura[0].get_body().get_content()
    for m in sakura:  # one company's notice never names another company
        body = m.get_body(preferencelist=("plain",)).get_content()
        assert "緑商事" not in body and "あおぞら" not in body

    # A second cycle finds nothing new: no duplicate ticket, no duplicate notice.
    tickets_before = run(config, "tickets", "--all").output
    run(config, "poll")
    assert run(config, "tickets", "--all").output == tickets_before
    with sessions() as session:
        assert session.scalar(select(func.count(OutboxMessage.id))) == outbox_before
    assert len(mails(tmp_path / "mail")) == len(sent)

    # Seats: three companies, their trials' days left as of today (the sample programme in
    # sandbox_config.py), device counts as the sandbox's inventory has them.
    seats = json.loads(run(config, "seats", "--json").output)
    left = {row["company"]: row["days_left"] for row in seats}
    assert left == {"sakura-seisakusho": 30, "midori-shoji": -10, "aozora-design": 41}
    listed = run(config, "seats").output.splitlines()
    assert [line.split()[-2] for line in listed[1:4]] == ["(41d)", "ended", "(30d)"]
    with sessions() as session:
        for tenant_id, key in KEYS.items():
            machines = world.list_machines(tenant_id, [], 0, 10000)
            active = [m for m in machines if parse_iso(m["lastSeen"]) >= now - timedelta(days=7)]
            row = next(r for r in seat_counts(session, now) if r.company_key == key)
            assert (row.onboarded, row.active_7d, row.cap) == (len(machines), len(active), 300)

    # The report: a Japanese HTML file, and a mail to the company.
    out = tmp_path / "report.html"
    last = jst_date(now)
    first = last - timedelta(days=14)
    run(
        config,
        "report",
        "--company",
        "sakura-seisakusho",
        "--from",
        str(first),
        "--to",
        str(last),
        "--output",
        str(out),
    )
    html = out.read_text(encoding="utf-8")
    assert '<html lang="ja"' in html and "株式会社さくら製作所" in html and "緑商事" not in html
    reports = [
        m
        for m in mails(tmp_path / "mail")
        if m["To"] == "it@sakura.example.jp" and "レポート" in m["Subject"]
    ]
    assert len(reports) == 1

    # midori-shoji's trial ended undecided (10 days ago): one offboarding task per device of
    # midori's, planned once; sakura (in its trial) and aozora (continuing) get none.
    run(config, "offboarding", "--plan")
    run(config, "offboarding", "--plan")
    with sessions() as session:
        tasks = session.scalars(
            select(ResponseAction).where(ResponseAction.kind == "offboard")
        ).all()
    assert len(tasks) == len(world.list_machines(MIDORI, [], 0, 10000))
    assert {t.status for t in tasks} == {"planned"}
    with sessions() as session:
        midori = session.scalar(select(Tenant.id).where(Tenant.external_id == MIDORI))
    assert {t.tenant_id for t in tasks} == {midori}


def test_offboarding_is_sent_once_and_followed_to_success(tmp_path, sandbox, database_url):
    config = sandbox_config(tmp_path, sandbox, database_url)
    run(config, "db", "upgrade")
    run(config, "poll", "--company", "midori-shoji")
    run(config, "offboarding", "--plan")
    run(config, "offboarding", "--company", "midori-shoji", "--execute", "--yes")
    run(config, "offboarding", "--company", "midori-shoji", "--execute", "--yes")
    machines = sandbox.world.list_machines(MIDORI, [], 0, 10000)
    offboards = {d: c.get("Offboard", 0) for d, c in sandbox.world.action_counts(MIDORI).items()}
    assert offboards == {m["id"]: 1 for m in machines}
    run(config, "run-job", "inventory")
    output = run(config, "offboarding", "--company", "midori-shoji").output
    assert "succeeded" in output.lower()


def test_secrets_never_reach_the_database_the_mail_or_the_logs(tmp_path, sandbox, database_url):
    config = sandbox_config(tmp_path, sandbox, database_url)
    run(config, "db", "upgrade")
    poll = subprocess.run(
        [
            str(Path(sys.executable).parent / "edrtrial"),
            "--config",
            str(config),
            "--log-level",
            "DEBUG",
            "poll",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=clock.subprocess_env(),  # the poll runs at the test's now, like the sandbox
    )
    assert poll.returncode == 0, poll.stderr
    assert "new token" in poll.stderr  # the DEBUG log did cover authentication
    secrets = [sandbox.secret_path(t).read_text().strip() for t in KEYS]

    engine = make_engine(database_url)
    with engine.connect() as conn:
        dump = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(table.select())
        )
    engine.dispose()
    mail = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "mail").glob("*.eml"))
    assert len(dump) > 10_000 and mail
    for secret in secrets:
        assert secret not in dump
        assert secret not in mail
        assert secret not in poll.stdout + poll.stderr


def test_revoked_consent_parks_only_that_tenant_until_an_operator_resumes_it(
    tmp_path, sandbox, database_url
):
    config = sandbox_config(tmp_path, sandbox, database_url)
    run(config, "db", "upgrade")
    sandbox.world.set_consent(MIDORI, False)
    failed = CliRunner().invoke(main, ["--config", str(config), "poll"])
    assert failed.exit_code == 1  # the poll reports the problem…
    tenants = run(config, "tenants", "--wide").output
    assert "parked" in tenants and "AADSTS65001" in tenants
    with make_sessions(make_engine(database_url))() as session:  # …the others went on
        states = dict(session.execute(select(Tenant.external_id, Tenant.state)).all())
    assert states == {SAKURA: "active", MIDORI: "parked", AOZORA: "active"}

    sandbox.world.set_consent(MIDORI, True)
    assert CliRunner().invoke(main, ["--config", str(config), "poll"]).exit_code == 1  # parked
    run(config, "tenants", "resume", "midori-shoji")
    run(config, "poll")
    assert "parked" not in run(config, "tenants").output


def test_the_weekly_report_job_mails_each_trial_company_once_per_week(
    tmp_path, sandbox, database_url
):
    from edrtrial.config import load_config
    from edrtrial.service import jobs
    from edrtrial.service.runtime import Runtime

    config = sandbox_config(tmp_path, sandbox, database_url)
    run(config, "db", "upgrade")
    run(config, "poll")
    runtime = Runtime.open(load_config(config))
    try:
        monday = clock.this_monday()
        # midori's trial ended before last week began: no report for it.
        assert jobs.weekly_reports(runtime, monday) == 2
        assert jobs.weekly_reports(runtime, monday) == 0  # asked again: nothing more queued
        jobs.deliver_outbox(runtime)
    finally:
        runtime.close()
    # aozora reads English: its report is English too.
    reports = [
        m
        for m in mails(tmp_path / "mail")
        if "検知レポート" in m["Subject"] or "detection report" in m["Subject"]
    ]
    assert sorted(m["To"] for m in reports) == ["it@sakura.example.jp", "office@aozora.example.jp"]
    first, last = monday - timedelta(days=7), monday - timedelta(days=1)
    for m in reports:
        shape = "%d %b %Y" if m["Subject"].startswith("[EDR trial]") else "%Y/%m/%d"
        assert first.strftime(shape) in m["Subject"] and last.strftime(shape) in m["Subject"]


def test_an_unreadable_alert_is_quarantined_and_shown_the_rest_is_stored(
    tmp_path, sandbox, database_url
):
    config = sandbox_config(tmp_path, sandbox, database_url, companies=1)
    run(config, "db", "upgrade")
    [alert_id] = sandbox.world.add_alerts(SAKURA, "ransomware", count=1)
    sandbox.world.set_malformed(SAKURA, alert_id)  # served without lastUpdateDateTime
    run(config, "poll")
    shown = run(config, "quarantine").output
    assert alert_id in shown and "1 record(s)" in shown
    with make_sessions(make_engine(database_url))() as session:
        stored = set(session.scalars(select(Alert.source_id)))
    assert alert_id not in stored
    assert len(stored) == len(sandbox.world.alerts(SAKURA)) - 1
