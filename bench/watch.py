"""What the store holds while a poll runs: counts, and a progress display fed by them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, func, select

from edrtrial.db import make_engine
from edrtrial.models import Alert, Incident, OutboxMessage, Ticket


def stored_alerts(engine: Engine) -> int:
    """Alerts stored (count(*): SQLite counts an index, not the wide rows)."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Alert)) or 0


def alert_counts(engine: Engine) -> tuple[int, int]:
    """(alerts stored, alerts triaged); the second reads every row."""
    with engine.connect() as conn:
        triaged = conn.scalar(
            select(func.count()).select_from(Alert).where(Alert.triaged_at.is_not(None))
        )
    return stored_alerts(engine), triaged or 0


def incident_counts(engine: Engine) -> tuple[int, int]:
    """(incidents stored, distinct incidents the stored alerts name, per tenant)."""
    named = (
        select(Alert.tenant_id, Alert.incident_source_id)
        .where(Alert.incident_source_id.is_not(None))
        .distinct()
        .subquery()
    )
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count(Incident.id))) or 0
        return stored, conn.scalar(select(func.count()).select_from(named)) or 0


def desk_counts(engine: Engine) -> tuple[int, int]:
    """(tickets opened, mails queued)."""
    with engine.connect() as conn:
        tickets = conn.scalar(select(func.count()).select_from(Ticket)) or 0
        mails = conn.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    return tickets, mails


@contextmanager
def progress(console: Console, url: str, total: int) -> Iterator[None]:
    """A bar of stored alerts, refreshed every second from its own engine."""
    columns = (
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    stop = threading.Event()
    with Progress(*columns, console=console, transient=True) as bars:
        stored = bars.add_task("stored", total=total)

        def refresh() -> None:
            engine = make_engine(url)
            try:
                while not stop.wait(1.0):
                    bars.update(stored, completed=stored_alerts(engine))
            finally:
                engine.dispose()

        thread = threading.Thread(target=refresh, name="bench-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
