"""The desk's pages at programme scale: how fast the console answers an operator.

A fresh store (SQLite, then PostgreSQL when one answers) is filled with bulk inserts: two
cohorts of 50 companies, 100,000 tickets (most closed or resolved, some thousands open,
some overdue) and 300,000 alerts, an audit event per ticket. The console is started
(ConsoleServer, real HTTP on loopback), an operator signs in through the form, and each
page is asked for `REQUESTS` times: the queue with its default filters and with a filter,
the queue of a person limited to one cohort, the rows fragment (unchanged: 204; and in
full) and ticket pages of tickets with alerts. p50 and p95 against the goal (200 ms p95).
Prints figures; never fails.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from edrtrial.access import accounts
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.models import Alert, AuditEvent, Cohort, Company, Tenant, Ticket, Trial
from edrtrial.service.runtime import Runtime
from edrtrial.web.server import ConsoleServer

GOAL_P95_MS = 200.0
REQUESTS = 50
TICKETS, ALERTS = 100_000, 300_000
COMPANIES, COHORTS = 100, 2
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = 5_000
PASSWORD = "bench-password-1234"

_CONFIG = """\
[database]
url = "{url}"

[mail]
from_address = "edr-trial@example.jp"
outbox_dir = "{root}/mail"

[desk]
name = "bench desk"
email = "desk@example.jp"

[logging]
level = "WARNING"

[web]
port = 0
key_file = "{root}/console-session.key"
"""

_TITLES = (
    "Suspicious PowerShell command line",
    "'Emotet' malware was detected",
    "Possible credential dumping",
    "Suspicious execution of hidden file",
    "Ransomware behavior detected in the file system",
    "Connection to a known command and control server",
)


@dataclass
class Timing:
    """One page's answer times, in milliseconds."""

    name: str
    ms: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    def p(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class StoreFigures:
    """The figures of one store."""

    kind: str
    seed_seconds: float = 0.0
    open_tickets: int = 0
    timings: list[Timing] = field(default_factory=list)
    error: str = ""


def _evidence(n: int) -> dict[str, Any]:
    pid = 1000 + n % 5000
    return {
        "evidence": [
            {
                "@odata.type": "#microsoft.graph.security.processEvidence",
                "processId": pid,
                "parentProcessId": 600,
                "processCommandLine": f"powershell.exe -nop -w hidden -enc SQBFAFgA{n}",
                "imageFile": {"fileName": "powershell.exe", "filePath": "C:\\Windows\\System32"},
                "parentProcessImageFile": {"fileName": "winword.exe", "filePath": "C:\\Office"},
                "userAccount": {"accountName": f"user{n % 40}", "domainName": "CORP"},
            },
            {
                "@odata.type": "#microsoft.graph.security.fileEvidence",
                "fileDetails": {
                    "fileName": f"invoice-{n}.docm",
                    "filePath": "C:\\Users\\user\\Downloads",
                    "sha256": f"{n:064x}",
                },
            },
            {
                "@odata.type": "#microsoft.graph.security.urlEvidence",
                "url": f"http://c2.example/{n}",
            },
        ]
    }


def seed(url: str, now: datetime, tickets: int, alerts: int) -> int:
    """Fill the migrated store at `url`; returns how many tickets are open."""
    rng = random.Random(7)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    try:
        with transaction(sessions) as session:
            cohorts = []
            for c in range(COHORTS):
                cohort = Cohort(
                    key=f"bench-{c + 1}", name=f"第{c + 1}期", course="edr", capacity=60
                )
                session.add(cohort)
                cohorts.append(cohort)
            session.flush()
            tenant_ids = []
            for i in range(COMPANIES):
                company = Company(
                    key=f"company-{i:03d}",
                    name=f"株式会社ベンチ{i:03d}",
                    contact_email=f"it@c{i}.example.jp",
                    cohort_id=cohorts[i % COHORTS].id,
                    state="in_trial",
                )
                session.add(company)
                session.flush()
                session.add(
                    Trial(
                        company_id=company.id,
                        starts_on=date(2026, 10, 1),
                        ends_on=date(2026, 12, 31),
                    )
                )
                tenant = Tenant(company_id=company.id, connector="defender", external_id=f"t-{i}")
                session.add(tenant)
                session.flush()
                tenant_ids.append(tenant.id)
        open_count = 0
        rows: list[dict[str, Any]] = []
        audit_rows: list[dict[str, Any]] = []
        states: list[str] = []
        for n in range(tickets):
            roll = rng.random()
            state = (
                "closed"
                if roll < 0.88
                else "resolved"
                if roll < 0.95
                else "new"
                if roll < 0.97
                else "acknowledged"
                if roll < 0.985
                else "in_progress"
            )
            states.append(state)
            open_count += state in ("new", "acknowledged", "in_progress")
            opened = now - timedelta(minutes=(tickets - n) * 2)
            tenant = tenant_ids[n % COMPANIES]
            rows.append(
                {
                    "id": n + 1,
                    "tenant_id": tenant,
                    "correlation_key": f"incident:{n}",
                    "correlation_base": f"incident:{n}",
                    "title": _TITLES[n % len(_TITLES)],
                    "priority": f"P{1 + rng.randrange(4)}",
                    "state": state,
                    "assignee": f"op{n % 7}" if state in ("acknowledged", "in_progress") else "",
                    "created_at": opened,
                    "updated_at": opened,
                    "last_alert_at": opened,
                    "ack_due_at": opened + timedelta(minutes=rng.choice((30, 120, 480, 1440))),
                    "channel": "desk",
                    "summary": {},
                }
            )
            audit_rows.append(
                {
                    "at": opened,
                    "actor": "service",
                    "action": "ticket.opened",
                    "tenant_id": tenant,
                    "target": f"ticket:{n + 1}",
                    "detail": {"priority": rows[-1]["priority"]},
                }
            )
            if len(rows) >= BATCH:
                _insert(sessions, Ticket, rows)
                _insert(sessions, AuditEvent, audit_rows)
        _insert(sessions, Ticket, rows)
        _insert(sessions, AuditEvent, audit_rows)
        alert_rows: list[dict[str, Any]] = []
        per_ticket = alerts / tickets
        made = 0
        for n in range(tickets):
            want = int((n + 1) * per_ticket) - int(n * per_ticket)
            open_ticket = states[n] in ("new", "acknowledged", "in_progress")
            for k in range(want):
                made += 1
                opened = now - timedelta(minutes=(tickets - n) * 2 - k)
                device = f"pc-{(n * 7 + k) % 60:03d}.c{n % COMPANIES}.example.jp"
                alert_rows.append(
                    {
                        "tenant_id": tenant_ids[n % COMPANIES],
                        "source": "defender",
                        "source_id": f"da{made}",
                        "incident_source_id": str(n),
                        "title": _TITLES[n % len(_TITLES)],
                        "severity": "high",
                        "status": "resolved" if not open_ticket else "new",
                        "category": "Execution",
                        "device_source_ids": [f"dev-{(n * 7 + k) % 60}"],
                        "device_names": [device],
                        "evidence": {"command_lines": [f"powershell.exe -enc {n}"]},
                        "created_at": opened,
                        "raw": _evidence(n) if open_ticket else {},
                        "ingested_at": opened,
                        "triaged_at": opened,
                        "priority": "P2",
                        "ticket_id": n + 1,
                    }
                )
                if len(alert_rows) >= BATCH:
                    _insert(sessions, Alert, alert_rows)
        _insert(sessions, Alert, alert_rows)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("SELECT setval('ticket_id_seq', (SELECT max(id) FROM ticket))"))
                conn.execute(text("ANALYZE"))
        else:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        return open_count
    finally:
        engine.dispose()


def _insert(sessions: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    """One bulk INSERT of `rows` (emptied afterwards)."""
    if not rows:
        return
    with transaction(sessions) as session:
        session.execute(insert(model), rows)
    rows.clear()


def _sign_in(base_url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=60)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    answer = client.post(
        "/login",
        data={"csrf": token.group(1), "username": username, "password": PASSWORD, "next": "/"},
    )
    if answer.status_code != 303:
        raise RuntimeError(f"signing in as {username} was answered {answer.status_code}")
    return client


def _time(name: str, paths: Callable[[int], str], client: httpx.Client, n: int) -> Timing:
    timing = Timing(name)
    client.get(paths(0))  # warm: the first request of a kind is not the desk's usual one
    for i in range(n):
        started = time.perf_counter()
        answer = client.get(paths(i))
        timing.ms.append((time.perf_counter() - started) * 1000)
        timing.statuses.add(answer.status_code)
    return timing


def measure_store(kind: str, url: str, root: Path, *, tickets: int, alerts: int) -> StoreFigures:
    """Seed the store at `url`, serve the console on it, time its pages."""
    figures = StoreFigures(kind)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    figures.open_tickets = seed(url, now, tickets, alerts)
    figures.seed_seconds = time.perf_counter() - started
    config_path = root / f"config-{kind}.toml"
    config_path.write_text(_CONFIG.format(url=url, root=root), encoding="utf-8")
    config = load_config(config_path)
    runtime = Runtime.open(config)
    try:
        with transaction(runtime.sessions) as session:
            accounts.add(session, "operator", PASSWORD, ["operator"], actor="bench", at=now)
            accounts.add(
                session, "limited", PASSWORD, ["operator"], actor="bench", at=now,
                cohorts=["bench-1"],
            )  # fmt: skip
        with runtime.sessions() as session:
            open_ids = list(
                session.scalars(
                    select(Ticket.id).where(Ticket.state == "new").order_by(Ticket.id).limit(10)
                )
            )
            closed_ids = list(
                session.scalars(
                    select(Ticket.id).where(Ticket.state == "closed").order_by(Ticket.id).limit(10)
                )
            )
        server = ConsoleServer(runtime, config, port=0)
        server.start()
        try:
            op = _sign_in(server.base_url, "operator")
            limited = _sign_in(server.base_url, "limited")
            version = re.search(r'hx-get="([^"]+)"', op.get("/desk").text)
            rows_url = version.group(1).replace("&amp;", "&") if version else "/desk/rows"
            pages = open_ids + closed_ids or [1]
            figures.timings = [
                _time("queue (default: all open)", lambda i: "/desk", op, REQUESTS),
                _time("queue ?priority=P1", lambda i: "/desk?priority=P1", op, REQUESTS),
                _time(
                    "queue ?company=…&state=closed",
                    lambda i: f"/desk?company=company-{i % COMPANIES:03d}&state=closed",
                    op,
                    REQUESTS,
                ),
                _time("queue, limited to a cohort", lambda i: "/desk", limited, REQUESTS),
                _time("rows fragment, unchanged (204)", lambda i: rows_url, op, REQUESTS),
                _time("rows fragment, in full", lambda i: "/desk/rows", op, REQUESTS),
                _time(
                    "ticket page (open and closed)",
                    lambda i: f"/tickets/{pages[i % len(pages)]}",
                    op,
                    REQUESTS,
                ),
            ]
        finally:
            server.stop()
    finally:
        runtime.close()
    return figures


@contextmanager
def _postgres(admin_url: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database for the run, dropped afterwards; None when none answers."""
    name = f"bench_console_{os.getpid()}"
    try:
        admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001  (no PostgreSQL here: the figures say so)
        yield None
        return
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(
    *, tickets: int = TICKETS, alerts: int = ALERTS, postgres: str = POSTGRES, console: Console
) -> list[StoreFigures]:
    """The figures on SQLite, then on PostgreSQL."""
    found: list[StoreFigures] = []
    with tempfile.TemporaryDirectory(prefix="edrtrial-bench-console-") as tmp:
        root = Path(tmp)
        with console.status(f"console on SQLite: seeding {tickets:,} tickets, {alerts:,} alerts"):
            found.append(
                measure_store(
                    "SQLite",
                    f"sqlite:///{root / 'console.db'}",
                    root,
                    tickets=tickets,
                    alerts=alerts,
                )
            )
        with _postgres(postgres) as url:
            if url is None:
                found.append(StoreFigures("PostgreSQL", error=f"no PostgreSQL at {postgres}"))
            else:
                with console.status(
                    f"console on PostgreSQL: seeding {tickets:,} tickets, {alerts:,} alerts"
                ):
                    found.append(
                        measure_store("PostgreSQL", url, root, tickets=tickets, alerts=alerts)
                    )
    return found


def print_figures(console: Console, stores: list[StoreFigures], tickets: int, alerts: int) -> None:
    """The figures of each store against the goal."""
    console.print(
        f"[bold]Console pages[/] over {tickets:,} tickets and {alerts:,} alerts "
        f"({COMPANIES} companies in {COHORTS} cohorts), {REQUESTS} requests each, "
        f"goal p95 ≤ {GOAL_P95_MS:.0f} ms"
    )
    for store in stores:
        if store.error:
            console.print(f"{store.kind}: not measured ({store.error})")
            continue
        table = Table(
            "page", "p50 ms", "p95 ms", "max ms", "p95 / goal", "answers",
            title=f"{store.kind}: {store.open_tickets:,} open tickets, seeded in "
            f"{store.seed_seconds:.0f} s",
        )  # fmt: skip
        for t in store.timings:
            p95 = t.p(0.95)
            ratio = p95 / GOAL_P95_MS
            table.add_row(
                t.name,
                f"{statistics.median(t.ms):.1f}",
                f"{p95:.1f}",
                f"{max(t.ms):.1f}",
                f"{ratio:.2f}" + ("" if ratio <= 1 else "  OVER"),
                ",".join(str(s) for s in sorted(t.statuses)),
            )
        console.print(table)
