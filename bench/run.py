#!/usr/bin/env python3
"""`make bench`: issue 3's performance figures, measured against the sandbox in one run.

1. ingest throughput: the first poll of N tenants x M alerts, then the polls it takes until
   every alert is triaged, with a fetch / store / triage split
2. the same rows through a raw floor (json.loads + bulk INSERT), and the ratio
3. API calls per tenant in an idle cycle (poll + inventory with nothing new)
4. peak memory during (1)
5. playbook throughput over ~200 rules
6. restart to first poll: kill -9 a running `serve`, start another, until it has polled
7. monthly PDF reports with charts: N rendered in 2 processes, memory at start, middle, end
   (`--only pdfs --pdfs 100` for this one alone)
8. the console's desk pages over 100,000 tickets and 300,000 alerts, on SQLite and on
   PostgreSQL: p50/p95 of the queue, its rows fragment and ticket pages (`--only console`)
Prints figures; exits 0 (no thresholds) but says WARN when an idle cycle costs too much.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

import console_pages
import floor
import playbook_speed
import report_pdfs
import restart
from fleet import fresh_database, write_config
from quotas import lifted_client_budgets
from report import Figures, print_report
from rich.console import Console
from sandbox_process import SandboxInfo, SandboxProcess
from timing import TimedRuntime, peak_mb, reset_peak, rss_mb, timing
from watch import alert_counts, desk_counts, incident_counts, progress

from edrtrial.config import load_config
from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.db import make_engine
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date, utcnow

ISSUE_TENANTS, ISSUE_ALERTS = 100, 1000
MAX_POLLS = 20  # first poll plus catch-up polls; more means triage never catches up
MAX_INCIDENT_POLLS = 100
T = TypeVar("T")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=ISSUE_TENANTS, help="1-1000 (default 100)")
    parser.add_argument("--alerts", type=int, default=ISSUE_ALERTS, help="backlog per tenant")
    parser.add_argument("--rules", type=int, default=200, help="playbook rules in all")
    parser.add_argument("--facts", type=int, default=5000, help="alerts through the playbook")
    parser.add_argument(
        "--parallel", type=int, default=None, help="schedules.parallel_tenants (default: config's)"
    )
    parser.add_argument(
        "--throttle", action="store_true", help="keep Microsoft's quotas (sandbox and client)"
    )
    parser.add_argument(
        "--drain-incidents",
        action="store_true",
        help="before the idle cycle, poll until every incident is read (slow: a few per poll)",
    )
    parser.add_argument(
        "--only",
        choices=("pdfs", "console"),
        default=None,
        help="run one measurement only (pdfs: the monthly PDF reports; console: the desk's pages)",
    )
    parser.add_argument(
        "--console-tickets", type=int, default=console_pages.TICKETS, help="tickets in the store"
    )
    parser.add_argument(
        "--console-alerts", type=int, default=console_pages.ALERTS, help="alerts in the store"
    )
    parser.add_argument(
        "--postgres", default=console_pages.POSTGRES, help="PostgreSQL server for the console"
    )
    parser.add_argument(
        "--pdfs", type=int, default=report_pdfs.GOAL_REPORTS, help="monthly PDF reports to render"
    )
    parser.add_argument(
        "--pdf-workers", type=int, default=2, help="processes rendering the PDFs (default 2)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="cProfile the ingest phase into FILE (implies --parallel 1) and print hotspots",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.parallel = 1
    return args


def _profiled(work: Callable[[], T], profile: Path | None, console: Console) -> T:
    if profile is None:
        return work()
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(work)
    finally:
        profiler.dump_stats(profile)
        console.print(f"[bold]cProfile of the ingest phase[/] (saved to {profile}):")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(30)


def _until_triaged(rt: Runtime, figures: Figures, console: Console) -> list[jobs.PollOutcome]:
    """The first poll, then polls until every stored alert is triaged (or MAX_POLLS)."""
    outcomes: list[jobs.PollOutcome] = []
    while figures.polls < MAX_POLLS:
        started = time.perf_counter()
        result = jobs.poll(rt)
        seconds = time.perf_counter() - started
        stored, triaged = alert_counts(rt.engine)
        figures.polls += 1
        console.print(
            f"poll {figures.polls}: {seconds:.1f}s, {stored:,} alerts stored, {triaged:,} triaged"
        )
        if figures.polls == 1:
            outcomes = result
            figures.first_poll_seconds, figures.first_poll_triaged = seconds, triaged
        if triaged >= stored:
            break
    return outcomes


def _ingest(rt: TimedRuntime, figures: Figures, console: Console, profile: Path | None) -> None:
    """Time ingestion until all is triaged; split it; take the memory peak."""
    reset_peak()
    figures.rss_before_mb = rss_mb()
    with (
        progress(console, rt.config.database_url, figures.sandbox_alerts),
        timing(jobs, "poll_one", rt.stopwatch, "tenant"),
        timing(jobs, "triage_pending", rt.stopwatch, "triage"),
    ):
        started = time.perf_counter()
        outcomes = _profiled(lambda: _until_triaged(rt, figures, console), profile, console)
        figures.poll_seconds = time.perf_counter() - started
    figures.peak_mb = peak_mb()
    figures.stored, figures.triaged = alert_counts(rt.engine)
    figures.incidents_stored, figures.incidents_named = incident_counts(rt.engine)
    figures.tickets, figures.mails = desk_counts(rt.engine)
    figures.failed = [f"{o.company_key}: {o.error}" for o in outcomes if o.error]
    figures.tenant_seconds = rt.stopwatch.total("tenant")
    figures.fetch_alerts_seconds = rt.stopwatch.total("fetch:alerts")
    figures.fetch_incidents_seconds = rt.stopwatch.total("fetch:incidents")
    figures.triage_seconds = rt.stopwatch.total("triage")


def _drain_incidents(rt: Runtime, figures: Figures, console: Console) -> None:
    """Poll until every incident the alerts name is read (the connector reads a few a poll)."""
    started = time.perf_counter()
    with console.status("reading the incident backlog") as status:
        while figures.incident_polls < MAX_INCIDENT_POLLS:
            stored, named = incident_counts(rt.engine)
            if stored >= named:
                break
            status.update(f"reading the incident backlog: {stored:,} of {named:,}")
            jobs.poll(rt)
            figures.incident_polls += 1
    figures.incident_seconds = time.perf_counter() - started
    figures.incidents_drained, _ = incident_counts(rt.engine)


def _idle_cycle(rt: Runtime, sandbox: SandboxProcess, figures: Figures) -> None:
    """A first inventory (not counted), then poll + inventory with nothing new, counted."""
    started = time.perf_counter()
    jobs.inventory(rt)
    figures.inventory_seconds = time.perf_counter() - started
    sandbox.reset()
    started = time.perf_counter()
    jobs.poll(rt)
    jobs.inventory(rt)
    figures.idle_seconds = time.perf_counter() - started
    figures.idle_counts = sandbox.counts()


def _edrtrial(
    rt: TimedRuntime,
    sandbox: SandboxProcess,
    figures: Figures,
    console: Console,
    profile: Path | None,
    drain: bool,
) -> None:
    """Ingestion, then the idle cycle, on one runtime (so tokens stay cached)."""
    try:
        sandbox.reset()
        _ingest(rt, figures, console, profile)
        figures.first_counts = sandbox.counts()
        figures.not_active = [t.company_key for t in rt.tenants() if t.state != "active"]
        if drain:
            _drain_incidents(rt, figures, console)
        with console.status("idle cycle: poll + inventory with nothing new"):
            _idle_cycle(rt, sandbox, figures)
    finally:
        rt.close()


def _floor(root: Path, info: SandboxInfo, figures: Figures, console: Console) -> None:
    """Download the same pages (untimed), then the timed floor into a fresh database."""
    with console.status("floor: downloading the same Graph pages (not timed)"):
        page_size = int(DefenderSettings.model_fields["alert_page_size"].default)
        figures.download = floor.download(info, page_size, root / "pages")
    database = fresh_database(root / "floor.db")
    # The companies and tenants the rows belong to are imported with the config.
    config = load_config(write_config(root / "floor.toml", info, database, figures.today))
    engine = make_engine(config.database_url)
    try:
        with console.status("floor: json.loads + bulk INSERT"):
            figures.floor = floor.run_floor(engine, figures.download.files)
    finally:
        engine.dispose()


def _playbook(root: Path, info: SandboxInfo, figures: Figures, rules: int, count: int) -> None:
    if figures.download is None:
        return
    keys = {t.tenant_id: t.key for t in info.tenants}
    alerts = floor.sample_alerts(figures.download.files, count)
    facts = playbook_speed.facts_from_graph(alerts, keys)
    figures.playbook_shipped, figures.playbook_many = playbook_speed.run(root, rules, facts)


def _with_parallel(config_path: Path, parallel: int | None) -> None:
    if parallel is not None:
        with config_path.open("a", encoding="utf-8") as out:
            out.write(f"\n[schedules]\nparallel_tenants = {parallel}\n")


def _run(args: argparse.Namespace, root: Path, figures: Figures, console: Console) -> None:
    sandbox = SandboxProcess(args.tenants, args.alerts, root / "sandbox", throttle=args.throttle)
    with console.status(f"sandbox: generating {args.tenants} x {args.alerts} alerts"):
        info = sandbox.__enter__()
    try:
        figures.sandbox_alerts, figures.sandbox_build_seconds = info.alerts, info.build_seconds
        database = fresh_database(root / "edrtrial.db")
        config_path = write_config(root / "config.toml", info, database, figures.today)
        _with_parallel(config_path, args.parallel)
        config = load_config(config_path)
        figures.parallel = getattr(config.settings.schedules, "parallel_tenants", 1)
        with lifted_client_budgets() if not args.throttle else nullcontext(False) as lifted:
            figures.client_budgets_lifted = lifted
            runtime = TimedRuntime.open(config)
            if not isinstance(runtime, TimedRuntime):  # Runtime.open builds `cls`
                raise TypeError(f"Runtime.open built a {type(runtime).__name__}")
            _edrtrial(runtime, sandbox, figures, console, args.profile, args.drain_incidents)
        with console.status("restart: kill -9 a running serve, time the next one's first poll"):
            engine = make_engine(config.database_url)
            try:
                figures.restart = restart.measure(config_path, engine, root)
            finally:
                engine.dispose()
        _floor(root, info, figures, console)
        _playbook(root, info, figures, args.rules, args.facts)
    finally:
        sandbox.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the figures."""
    args = _arguments(argv)
    console = Console(width=max(Console().width, 110))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.only == "pdfs":
        with console.status(f"rendering {args.pdfs} monthly PDF reports"):
            pdfs = report_pdfs.measure(args.pdfs, args.pdf_workers, console=console)
        report_pdfs.print_figures(console, pdfs)
        return 0
    if args.only == "console":
        _console_pages(args, console)
        return 0
    figures = Figures(args.tenants, args.alerts, today=jst_date(utcnow()), throttled=args.throttle)
    figures.reduced = (args.tenants, args.alerts) != (ISSUE_TENANTS, ISSUE_ALERTS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edrtrial-bench-") as tmp:
        _run(args, Path(tmp), figures, console)
    with console.status(f"rendering {args.pdfs} monthly PDF reports"):
        pdfs = report_pdfs.measure(args.pdfs, args.pdf_workers, console=console)
    figures.total_seconds = time.perf_counter() - started
    print_report(console, figures)
    report_pdfs.print_figures(console, pdfs)
    _console_pages(args, console)
    return 0


def _console_pages(args: argparse.Namespace, console: Console) -> None:
    tickets, alerts = args.console_tickets, args.console_alerts
    stores = console_pages.measure(
        tickets=tickets, alerts=alerts, postgres=args.postgres, console=console
    )
    console_pages.print_figures(console, stores, tickets, alerts)


if __name__ == "__main__":
    sys.exit(main())
