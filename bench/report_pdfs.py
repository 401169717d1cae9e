"""Monthly PDF reports with charts: how long N take to render, and whether memory stays flat.

Each report is a company's month as the service builds it (`build_detection_report` from
rows: 0-40 detections spread over the month, tickets, an isolation, 5-60 devices, one
company in ten in English), rendered by the same `detection_report_pdf` the mail attaches.
The rows are made in memory, so the figure is the rendering alone (charts, WeasyPrint),
not the store. Rendering runs in a pool of worker processes (2 by default: the goal is
1,000 reports in 10 minutes on 2 cores); each worker reports its resident memory after each
batch, so the start, middle and end figures show whether it grows with the reports.
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from rich.console import Console
from rich.table import Table
from timing import peak_mb, rss_mb

from edrtrial.config import DeskConfig, ProgrammeConfig
from edrtrial.models import Alert, Company, Device, ResponseAction, Ticket, Trial
from edrtrial.reports.detection import DetectionReport, build_detection_report

GOAL_SECONDS = 600.0
GOAL_REPORTS = 1000
BATCH = 10
_CATEGORIES = (
    "Malware",
    "CredentialAccess",
    "InitialAccess",
    "Execution",
    "Persistence",
    "SuspiciousActivity",
    "Ransomware",
    "CommandAndControl",
)
_SEVERITIES = ("high", "medium", "medium", "low", "low", "informational")
_DESK = DeskConfig(
    name="EDR体験 運営事務局",
    email="desk@example.jp",
    phone="03-0000-0000",
    hours="平日 9:00〜17:00",
    incident_desk_phone="03-1111-1111",
)
_PROGRAMME = ProgrammeConfig(secretariat_contact="東京都千代田区丸の内1-1-1\nTEL 03-0000-0000")


@dataclass
class Sample:
    """Resident memory of one worker at one point (after so many reports)."""

    pid: int
    done: int
    rss_mb: float
    peak_mb: float


@dataclass
class PdfFigures:
    """What the PDF bench measured."""

    reports: int
    workers: int
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the workers' own CPU time, whatever else the machine runs
    bytes: int = 0
    parent_rss_start: float = 0.0
    parent_rss_end: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    @property
    def per_report(self) -> float:
        return self.seconds / self.reports if self.reports else 0.0

    @property
    def projected(self) -> float:
        """The seconds GOAL_REPORTS would take at this pace."""
        return self.per_report * GOAL_REPORTS

    @property
    def cpu_per_report(self) -> float:
        return self.cpu_seconds / self.reports if self.reports else 0.0

    @property
    def projected_idle(self) -> float:
        """The seconds GOAL_REPORTS would take on `workers` cores left to the bench."""
        return self.cpu_per_report * GOAL_REPORTS / max(self.workers, 1)


def sample_report(number: int, period_end: date) -> DetectionReport:
    """A company's month, different for each number and the same at each run."""
    rng = random.Random(number)
    end = period_end
    start = end.replace(day=1)
    now = datetime.combine(end + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    days = (end - start).days + 1
    company = Company(
        id=number,
        key=f"co{number:04d}",
        name=f"株式会社サンプル{number:04d}",
        contact_name="山田 太郎",
        contact_email=f"it@co{number:04d}.example.jp",
        language="en" if number % 10 == 9 else "ja",
        planned_seats=rng.randint(5, 60),
        seat_cap=300,
    )
    trial = Trial(
        starts_on=start - timedelta(days=rng.randint(0, 40)),
        ends_on=end + timedelta(days=rng.randint(5, 60)),
        decision=rng.choice(("undecided", "undecided", "continue", "offboard")),
    )
    devices = [
        Device(
            id=d,
            tenant_id=number,
            source_id=f"m-{d}",
            name=f"PC-{d:03d}",
            in_inventory=True,
            onboarding_status="Onboarded",
            last_seen=now - timedelta(days=rng.choice((0, 1, 2, 3, 12))),
            detection_test_at=now - timedelta(days=30),
        )
        for d in range(company.planned_seats)
    ]
    tickets = []
    for t in range(rng.randint(0, 4)):
        created = datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(
            days=rng.randrange(days), hours=rng.randrange(24)
        )
        state = rng.choice(("new", "acknowledged", "in_progress", "resolved", "closed"))
        acknowledged = created + timedelta(minutes=rng.randint(3, 90))
        tickets.append(
            Ticket(
                id=number * 10 + t,
                tenant_id=number,
                title="x",
                priority=rng.choice(("P1", "P2", "P3")),
                state=state,
                created_at=created,
                acknowledged_at=None if state == "new" else acknowledged,
                resolved_at=(
                    acknowledged + timedelta(hours=rng.randint(1, 30))
                    if state in ("resolved", "closed")
                    else None
                ),
            )
        )
    alerts = []
    count = rng.choice((0, 0, 1, 2, 3, 5, 8, 12, 20, 40))
    for a in range(count):
        created = datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(
            days=rng.randrange(days), minutes=rng.randrange(24 * 60)
        )
        ticket = rng.choice(tickets) if tickets and rng.random() < 0.4 else None
        alert = Alert(
            id=number * 100 + a,
            tenant_id=number,
            source="mde",
            source_id=f"a{a}",
            title=f"Suspicious behaviour {a} on {devices[a % len(devices)].name}",
            severity=rng.choice(_SEVERITIES),
            category=rng.choice(_CATEGORIES),
            status="new",
            device_names=[devices[a % len(devices)].name],
            created_at=created,
            triaged_at=created,
        )
        alert.ticket = ticket
        alert.ticket_id = ticket.id if ticket else None
        alerts.append(alert)
    alerts.sort(key=lambda alert: alert.created_at or now)
    actions = []
    if tickets and alerts:
        action = ResponseAction(
            id=number,
            tenant_id=number,
            device_id=0,
            kind="isolate",
            status="succeeded",
            created_at=alerts[0].created_at,
        )
        action.device = devices[0]
        actions.append(action)
    return build_detection_report(
        company,
        number,
        alerts,
        devices,
        trial,
        start,
        end,
        now=now,
        desk=_DESK,
        programme=_PROGRAMME,
        kind="monthly",
        previous_total=rng.randint(0, 20),
        actions=actions,
    )


def _render(numbers: list[int], period_end: date) -> tuple[int, float, int, Sample]:
    """A worker's batch: render each report's PDF; its CPU time, bytes and memory after."""
    from edrtrial.reports.render import detection_report_pdf

    size = 0
    cpu = time.process_time()
    for number in numbers:
        size += len(detection_report_pdf(sample_report(number, period_end)))
    cpu = time.process_time() - cpu
    return len(numbers), cpu, size, Sample(os.getpid(), 0, rss_mb(), peak_mb())


def measure(reports: int, workers: int = 2, *, console: Console | None = None) -> PdfFigures:
    """Render `reports` monthly PDFs in `workers` processes; time and memory."""
    figures = PdfFigures(reports, workers, parent_rss_start=rss_mb())
    period_end = date(2026, 10, 31)
    batches = [list(range(i, min(i + BATCH, reports))) for i in range(0, reports, BATCH)]
    started = time.perf_counter()
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_render, batch, period_end) for batch in batches]
        for future in as_completed(futures):
            count, cpu, size, sample = future.result()
            done += count
            figures.cpu_seconds += cpu
            figures.bytes += size
            sample.done = done
            figures.samples.append(sample)
            if console is not None and (done % 100 == 0 or done == reports):
                elapsed = time.perf_counter() - started
                console.print(
                    f"  pdfs: {done}/{reports} in {elapsed:.0f} s, "
                    f"worker {sample.pid} RSS {sample.rss_mb:.0f} MB"
                )
    figures.seconds = time.perf_counter() - started
    figures.parent_rss_end = rss_mb()
    return figures


def _memory_at(figures: PdfFigures, fraction: float) -> str:
    """Each worker's RSS at the first sample past `fraction` of the reports."""
    target = figures.reports * fraction
    seen: dict[int, Sample] = {}
    for sample in figures.samples:
        if sample.done >= target and sample.pid not in seen:
            seen[sample.pid] = sample
    if fraction >= 1:
        seen = {s.pid: s for s in figures.samples}  # each worker's last
    return ", ".join(f"{s.rss_mb:.0f} MB (peak {s.peak_mb:.0f})" for s in seen.values())


def print_figures(console: Console, figures: PdfFigures) -> None:
    """The PDF figure, and the memory at start, middle and end."""
    table = Table(title="Monthly PDF reports with charts", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    verdict = "met" if figures.projected <= GOAL_SECONDS else "NOT met"
    table.add_row(
        f"{figures.reports} PDFs, {figures.workers} worker processes",
        f"{figures.seconds:.1f} s ({figures.per_report * 1000:.0f} ms each)",
        "",
    )
    table.add_row(
        f"{GOAL_REPORTS} PDFs at this pace",
        f"{figures.projected:.0f} s",
        f"≤ {GOAL_SECONDS:.0f} s ({verdict})",
    )
    idle = "met" if figures.projected_idle <= GOAL_SECONDS else "NOT met"
    table.add_row("CPU per PDF (the workers' own)", f"{figures.cpu_per_report * 1000:.0f} ms", "")
    table.add_row(
        f"{GOAL_REPORTS} PDFs on {figures.workers} idle cores",
        f"{figures.projected_idle:.0f} s",
        f"≤ {GOAL_SECONDS:.0f} s ({idle})",
    )
    table.add_row("size", f"{figures.bytes / max(figures.reports, 1) / 1024:.0f} KB each", "")
    table.add_row("worker RSS at start", _memory_at(figures, 0.0), "")
    table.add_row("worker RSS at middle", _memory_at(figures, 0.5), "")
    table.add_row("worker RSS at end", _memory_at(figures, 1.0), "flat")
    table.add_row(
        "bench process RSS", f"{figures.parent_rss_start:.0f} → {figures.parent_rss_end:.0f} MB", ""
    )
    console.print(table)
