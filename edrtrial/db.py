"""Engine, sessions and migrations: the same code on SQLite (default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import files
from edrtrial.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the CLI read while the scheduler writes; busy_timeout waits instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite statement waits for another connection's write lock before failing."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file (and its folder) is created owner-only if missing.

    SQLite gives its -wal and -shm files the database file's mode, so they follow.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            if Path(parsed.database).is_dir():
                raise StoreError(
                    f"the database {parsed.database} is a folder, not a SQLite file; "
                    "check database.url (it names the file, e.g. var/edrtrial.db)"
                )
            if not _not_sqlite(Path(parsed.database)):
                # A file that is not SQLite's is named by the first connection, with what to
                # do; advice to chmod it would be a second, misleading line.
                files.create_private(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _not_sqlite(path: Path) -> bool:
    """Whether `path` is a file with content that is not a SQLite database (an empty or
    missing file is a store still to be made)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != _SQLITE_HEADER


def is_memory_sqlite(url: str) -> bool:
    """A SQLite store that lives in this process's memory, which no other process can open."""
    parsed = make_url(url)
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in database
    )


_SQLITE_WAITING = ("locked", "busy", "unable to open", "disk i/o")


def store_unavailable(err: BaseException) -> bool:
    """Whether `err` says the store is busy or out of reach for now, so that waiting helps:
    a held SQLite write lock, a refused or lost PostgreSQL connection, a lock timeout.

    Not a damaged store, a missing table or a refused value: those stay as they are.
    """
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    if not isinstance(err, OperationalError):
        return False
    if isinstance(err.orig, sqlite3.Error):
        message = str(err.orig).lower()
        return any(word in message for word in _SQLITE_WAITING)
    # PostgreSQL's operational errors are the server's state, not the request's: connection
    # refused or lost, lock or statement timeout, too many connections, shutting down.
    return True


def reason(err: BaseException) -> str:
    """The first line of what the database driver said, without SQLAlchemy's statement."""
    found = getattr(err, "orig", None) or err
    return (str(found).strip().splitlines() or [type(found).__name__])[0]


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory every service, job and command uses."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit at the end, roll back on any error."""
    with sessions() as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(_alembic_config(engine), "head")
    return before, head_revision()


def head_revision() -> str:
    """The newest migration shipped with this version."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if head is None:
        raise StoreError("no migrations shipped (broken installation)")
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as err:
        raise StoreError(f"{_where(engine)}: {_cannot(err)}") from err


def _where(engine: Engine) -> str:
    """The store as an operator knows it: the SQLite file, or the URL without a password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the database {url.database or ':memory:'}"
    return f"the database {url.render_as_string(hide_password=True)}"


def _cannot(err: SQLAlchemyError) -> str:
    """What an operator should do about a store that cannot be read, by what went wrong."""
    return explain(err) or f"cannot read it ({reason(err)})"


def explain(err: BaseException) -> str | None:
    """What is wrong with the store and what to do, in one line, when `err` says the store
    itself is unusable (not a database, damaged, unreachable); None for any other error."""
    if not isinstance(err, SQLAlchemyError):
        return None
    said = reason(err)
    lowered = said.lower()
    if "file is not a database" in lowered:
        return (
            f"it is not a SQLite database ({said}); check database.url, or move the file "
            "away and run `edrtrial db upgrade` to make a new one"
        )
    if "malformed" in lowered or "corrupt" in lowered:
        return f"it is damaged ({said}); stop the service and restore it from a backup"
    if not store_unavailable(err):
        return None
    if isinstance(getattr(err, "orig", None), sqlite3.Error):
        if "locked" in lowered or "busy" in lowered:
            return f"it is locked by another program ({said}); try again when it is done"
        return f"cannot open it ({said}); check the path and its permissions"
    return f"cannot reach it ({said}); check that PostgreSQL runs and database.url"


def missing_store(url: str) -> str | None:
    """What is wrong when `url` names a SQLite file that does not exist (None when it does,
    for an in-memory store and for PostgreSQL): a check must not make an empty store where
    the real one was expected (a mistyped path, a volume not mounted)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or is_memory_sqlite(url):
        return None
    path = Path(parsed.database or "")
    if path.exists():
        return None
    return (
        f"the database {path}: no such file; check database.url (and that its disk is "
        "mounted), or run `edrtrial db upgrade` to make a new store"
    )


def existing_engine(url: str) -> Engine:
    """An engine for a store that must already be there (every command but `db upgrade`):
    a SQLite file that is missing is named (`missing_store`), not made empty."""
    if missing := missing_store(url):
        raise StoreError(missing)
    return make_engine(url)


def check_integrity(engine: Engine) -> str | None:
    """None for a store that answers and whose pages are whole; else what is wrong.

    On SQLite `PRAGMA quick_check` reads every page (a damaged file often opens and even
    answers the first query); on PostgreSQL, which keeps its own pages, a round trip.
    """
    try:
        with engine.connect() as conn:
            if engine.url.get_backend_name() != "sqlite":
                conn.execute(text("SELECT 1"))
                return None
            found = [str(row[0]) for row in conn.execute(text("PRAGMA quick_check"))]
    except SQLAlchemyError as err:
        return f"{_where(engine)}: {_cannot(err)}"
    if found == ["ok"]:
        return None
    # SQLite may give many problems as one text of lines under "*** in database main ***".
    found = [
        line.strip()
        for row in found
        for line in row.splitlines()
        if line.strip() and not line.startswith("***")
    ]
    first = found[0] if found else "no answer"
    more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
    return (
        f"{_where(engine)} is damaged: {first}{more}; stop the service and restore it from a backup"
    )


def ensure_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is older or newer than this code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise StoreError(
            f"the database {engine.url!r} is {state}, this version needs {head}: "
            "run `edrtrial db upgrade`"
        )
