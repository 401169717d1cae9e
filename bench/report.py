"""The figures of one bench run, and how they are printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import calls
from floor import Download, FloorResult
from playbook_speed import Speed
from restart import GOAL_SECONDS, Restart
from rich.console import Console
from rich.table import Table
from sandbox_process import Counts

GRAPH_QUOTA_PER_MINUTE = 150  # Graph security API, per app and tenant


@dataclass
class Figures:
    """Everything measured; filled in as the run goes."""

    tenants: int
    alerts: int
    today: date
    throttled: bool = False
    reduced: bool = False
    parallel: int = 1
    total_seconds: float = 0.0
    sandbox_alerts: int = 0
    sandbox_build_seconds: float = 0.0
    client_budgets_lifted: bool = False
    # 1 and 4: ingestion until everything is triaged
    first_poll_seconds: float = 0.0
    first_poll_triaged: int = 0
    polls: int = 0
    poll_seconds: float = 0.0
    stored: int = 0
    triaged: int = 0
    incidents_stored: int = 0
    incidents_named: int = 0
    tickets: int = 0
    mails: int = 0
    incident_polls: int = 0
    incident_seconds: float = 0.0
    incidents_drained: int = 0
    failed: list[str] = field(default_factory=list)
    not_active: list[str] = field(default_factory=list)
    tenant_seconds: float = 0.0
    fetch_alerts_seconds: float = 0.0
    fetch_incidents_seconds: float = 0.0
    triage_seconds: float = 0.0
    rss_before_mb: float = 0.0
    peak_mb: float = 0.0
    first_counts: Counts = field(default_factory=dict)
    # 3
    inventory_seconds: float = 0.0
    idle_seconds: float = 0.0
    idle_counts: Counts = field(default_factory=dict)
    # 2 and 5
    download: Download | None = None
    floor: FloorResult | None = None
    playbook_shipped: Speed | None = None
    playbook_many: Speed | None = None
    # 6
    restart: Restart | None = None

    @property
    def alerts_per_second(self) -> float:
        """Alerts stored and triaged per second of ingestion."""
        return self.triaged / self.poll_seconds if self.poll_seconds else 0.0


def _rate(n: float) -> str:
    return f"{n:,.0f}/s"


def _split(f: Figures) -> str:
    """Fetch / store / triage as shares of the tenants' summed poll time, in wall seconds."""
    if not f.tenant_seconds:
        return "n/a (jobs.poll_one not found)"
    shares = {
        "fetch alerts": f.fetch_alerts_seconds / f.tenant_seconds,
        "fetch incidents": f.fetch_incidents_seconds / f.tenant_seconds,
        "triage": f.triage_seconds / f.tenant_seconds,
    }
    shares["store"] = max(0.0, 1 - sum(shares.values()))
    return " · ".join(
        f"{name} {share:.0%} ({share * f.poll_seconds:.0f}s)" for name, share in shares.items()
    )


def _ingest_rows(table: Table, f: Figures) -> None:
    table.add_row(
        "1 ingest + triage",
        _rate(f.alerts_per_second),
        f"{f.triaged:,} of {f.sandbox_alerts:,} alerts stored and triaged in {f.poll_seconds:.1f}s "
        f"over {f.polls} poll(s), parallel_tenants={f.parallel}",
    )
    table.add_row(
        "  first poll alone",
        _rate(f.stored / f.first_poll_seconds if f.first_poll_seconds else 0),
        f"{f.first_poll_seconds:.1f}s; stored all, triaged {f.first_poll_triaged:,} "
        "(triage takes 500 per tenant and poll)",
    )
    table.add_row("  split", "", _split(f))
    incidents = f"of {f.incidents_named:,} the alerts name are read"
    if f.incident_polls:
        incidents += (
            f"; {f.incident_polls} more polls ({f.incident_seconds:.0f}s) read "
            f"{f.incidents_drained:,}"
        )
    table.add_row("  incidents", f"{f.incidents_stored:,}", incidents)
    table.add_row(
        "  desk", f"{f.tickets:,} tickets", f"{f.mails:,} mails queued by triage of the backlog"
    )
    graph = calls.average(f.first_counts, "graph")
    quotas = (
        "Microsoft's quotas on"
        if f.throttled
        else "quotas lifted: sandbox" + (" and client" if f.client_budgets_lifted else " only")
    )
    table.add_row(
        "  Graph calls",
        f"{graph:,.0f}/tenant",
        f"list_alerts {calls.average(f.first_counts, 'graph:list_alerts'):,.0f} + get_incident "
        f"{calls.average(f.first_counts, 'graph:get_incident'):,.0f}; at the real quota of "
        f"{GRAPH_QUOTA_PER_MINUTE}/min ≥ {graph / GRAPH_QUOTA_PER_MINUTE:.1f} min per tenant "
        f"({quotas})",
    )


def _floor_rows(table: Table, f: Figures) -> None:
    if f.floor is None or f.download is None:
        return
    rate = f.floor.rows / f.floor.seconds if f.floor.seconds else 0.0
    ratio = f.alerts_per_second / rate if rate else 0.0
    table.add_row(
        "2 raw floor",
        _rate(rate),
        f"{f.floor.rows:,} rows: json.loads {f.floor.parse_seconds:.1f}s + one executemany per "
        f"tenant and commit {f.floor.insert_seconds:.1f}s",
    )
    table.add_row(
        "  ratio edrtrial/floor",
        f"{ratio:.3f}",
        f"the floor is {1 / ratio:.0f}× faster" if ratio else "",
    )
    table.add_row(
        "  HTTP alone (context)",
        _rate(f.download.alerts / f.download.seconds),
        f"GET of the same {f.download.pages:,} pages ({f.download.bytes / 1e6:,.0f} MB), one "
        f"client, sequential: {f.download.seconds:.1f}s",
    )


def _main_table(f: Figures) -> Table:
    table = Table(
        title=f"edrtrial bench — {f.tenants} tenants × {f.alerts} alerts", title_justify="left"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("detail")
    _ingest_rows(table, f)
    _floor_rows(table, f)
    families = {row.name: row for row in calls.rows(f.idle_counts) if row.target is not None}
    table.add_row(
        "3 idle cycle calls",
        " / ".join(f"{families[k].average:.2f}" for k in calls.IDLE_TARGET if k in families),
        "graph / mde / login per tenant (target 1 / 1 / 0); "
        f"poll + inventory {f.idle_seconds:.1f}s (first inventory {f.inventory_seconds:.1f}s)",
    )
    table.add_row(
        "4 peak memory",
        f"{f.peak_mb:,.0f} MB",
        f"peak RSS during (1); {f.rss_before_mb:,.0f} MB before it, so "
        f"+{f.peak_mb - f.rss_before_mb:,.0f} MB (the sandbox is another process)",
    )
    if f.playbook_shipped and f.playbook_many:
        shipped, many = f.playbook_shipped, f.playbook_many
        table.add_row(
            f"5 playbook, {many.rules} rules",
            _rate(many.per_second),
            f"{1e6 / many.per_second:.0f} µs/alert; shipped {shipped.rules} rules alone "
            f"{_rate(shipped.per_second)} ({shipped.per_second / many.per_second:.1f}× faster)",
        )
    _restart_row(table, f.restart)
    return table


def _restart_row(table: Table, restart: Restart | None) -> None:
    if restart is None:
        return
    first = restart.first_poll_seconds
    detail = (
        f"goal ≤ {GOAL_SECONDS:.0f} s{'' if first is None or first <= GOAL_SECONDS else ' (ABOVE)'}"
        f"; kill -9 of a running serve, a new one started at once, until it stored a poll"
    )
    if restart.all_polled_seconds is not None:
        detail += f"; all {restart.tenants} tenants after {restart.all_polled_seconds:.1f}s"
    if restart.problem:
        detail += f"; {restart.problem}"
    table.add_row("6 restart to first poll", "n/a" if first is None else f"{first:.1f}s", detail)


def _calls_table(title: str, counts: Counts) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("api", "left"),
        ("avg/tenant", "right"),
        ("max", "right"),
        ("target", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in calls.rows(counts):
        table.add_row(
            row.name,
            f"{row.average:.2f}",
            str(row.maximum),
            "" if row.target is None else f"≤ {row.target}",
            "ABOVE" if row.over else "",
        )
    return table


def _warnings(console: Console, f: Figures) -> None:
    for problem in f.failed[:3]:
        console.print(f"[bold red]WARN tenant failed in the first poll:[/] {problem}")
    if len(f.failed) > 3:
        console.print(f"[bold red]WARN … and {len(f.failed) - 3} more tenants failed[/]")
    if f.not_active:
        console.print(
            f"[bold red]WARN {len(f.not_active)} tenants not active after ingestion "
            f"(the idle cycle skips them): {', '.join(f.not_active[:5])}[/]"
        )
    if f.triaged < f.sandbox_alerts:
        console.print(
            f"[bold red]WARN stored {f.stored:,} and triaged {f.triaged:,} of "
            f"{f.sandbox_alerts:,} alerts after {f.polls} polls[/]"
        )
    backlog = max(0, f.incidents_named - max(f.incidents_stored, f.incidents_drained))
    for row in calls.rows(f.idle_counts):
        if row.over:
            console.print(
                f"[bold red]WARN idle cycle: {row.name} averages {row.average:.2f} calls per "
                f"tenant (max {row.maximum}), target ≤ {row.target}[/]"
            )
            if row.name == "graph" and backlog:
                console.print(
                    f"     {backlog:,} incidents of the backlog were still unread, so this cycle "
                    "was not idle for Graph; --drain-incidents reads them first"
                )


def print_report(console: Console, f: Figures) -> None:
    """The tables, then notes and WARN lines."""
    console.print()
    if f.reduced:
        console.print(
            f"[bold yellow]NOTE reduced workload {f.tenants}×{f.alerts}: not issue 3's "
            "100×1000 figure[/]"
        )
    console.print(_main_table(f))
    console.print(_calls_table("3 idle cycle, requests per tenant", f.idle_counts))
    console.print(
        f"fetch = time inside connector calls (HTTP, JSON, mapping); store = the rest of each "
        f"tenant's poll, waits for SQLite's write lock included; shares are of summed "
        f"tenant-thread time (--profile runs one tenant at a time). Sandbox: "
        f"{f.sandbox_alerts:,} alerts built in {f.sandbox_build_seconds:.1f}s in its own "
        f"process. Whole run {f.total_seconds:.0f}s."
    )
    _warnings(console, f)
