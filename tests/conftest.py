"""Shared fixtures: the test's now, and a migrated throw-away database on SQLite, or on
PostgreSQL in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.db import make_engine, make_sessions, upgrade

import clock

# The console's browser fixtures (`browser`, `page`): Debian's chromium through Playwright.
pytest_plugins = ("browser", "console_sandbox")

FIXTURES = Path(__file__).parent / "fixtures"
PG_ENV = "EDRTRIAL_TEST_DATABASE_URL"


def pytest_configure(config: pytest.Config) -> None:
    """A run asked to be at another time (EDRTRIAL_TEST_CLOCK) really is, or does not start."""
    import time_machine

    if os.environ.get(clock.ENV) and not time_machine.escape_hatch.is_travelling():
        raise pytest.UsageError(
            f"{clock.ENV} is set but the clock did not move: is tests/clock_site on PYTHONPATH?"
        )


@pytest.fixture
def now() -> Iterator[datetime]:
    """The test runs at clock.NOW, the clock ticking from there; gives that instant (UTC).

    Fixtures that read the clock (a sandbox generates its data relative to it) take this one
    first, so that they too are built at the test's now.
    """
    with clock.travel(clock.NOW):
        yield clock.NOW


@pytest.fixture
def new_database_url(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases: SQLite files, or schemas on the CI PostgreSQL."""
    base = os.environ.get(PG_ENV)
    admin = make_engine(base) if base else None
    schemas: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        if admin is None:
            return f"sqlite:///{tmp_path / (name + '.db')}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        schemas.append(name)
        # search_path travels inside the URL, so subprocesses land in the same schema.
        url = make_url(base).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.begin() as conn:
            for name in schemas:
                conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(new_database_url: Callable[[], str]) -> str:
    """A fresh, empty database for this test."""
    return new_database_url()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the fresh database, migrated to head."""
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory on the migrated test database."""
    return make_sessions(engine)


def add_tenant(
    sessions: sessionmaker[Session], key: str, name: str = "", connector: str = "defender"
) -> int:
    """Store a company with its tenant; returns the tenant id."""
    from edrtrial.db import transaction
    from edrtrial.models import Company, Tenant

    with transaction(sessions) as session:
        company = Company(key=key, name=name or key, contact_email=f"it@{key}.example.jp")
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector=connector, external_id=f"t-{key}")
        session.add(tenant)
        session.flush()
        return tenant.id
