"""One service per store, decided by a lock that dies with its process.

On SQLite it is an OS file lock (`flock`) on `<database>.lock` beside the database file; on
PostgreSQL a session-level advisory lock held on a connection of its own. Either is let go
by the operating system or the server the moment the process ends, however it ends: a
service restarted after `kill -9` or a crash owns the store at once, with no lease to wait
out, and two live services on one store are still refused.

The `service_lock` row (`edrtrial.service.scheduler.record_holder`) only says who holds it
and since when, for the refusal message and for `edrtrial status`; it decides nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from edrtrial import files
from edrtrial.db import is_memory_sqlite, make_sessions, reason
from edrtrial.errors import LockHeldError, StoreError
from edrtrial.models import ServiceLock
from edrtrial.timeutil import JST

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"
ADVISORY_CLASS = 0x45445254
"""The advisory lock's first key ("EDRT"); the second is the schema's hash, so each schema of
one PostgreSQL database (each store) has a lock of its own."""


class Ownership(Protocol):
    """This process's hold on a store's schedule."""

    def lost(self) -> str | None:
        """None while the hold is ours; else why it is gone (the service must stop)."""

    def release(self) -> None:
        """Let go (a clean shutdown); the process ending does the same."""


def take(engine: Engine, holder: str, since: datetime) -> Ownership:
    """Own the store for this process's life, or raise LockHeldError naming the holder."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if is_memory_sqlite(url.render_as_string(hide_password=False)):
            return _Alone()  # no other process can open this process's memory
        return _FileLock.take(engine, Path(url.database or ""), holder, since)
    if url.get_backend_name() == "postgresql":
        return _AdvisoryLock.take(engine, holder)
    raise StoreError(
        f"database.url {url.render_as_string(hide_password=True)!r}: the service runs on "
        "SQLite or PostgreSQL only"
    )


def _holder_of(engine: Engine) -> str:
    """Who the store's `service_lock` row names, for the refusal message; "" when unknown."""
    try:
        with make_sessions(engine)() as session:
            row = session.scalar(select(ServiceLock).where(ServiceLock.name == LOCK_NAME))
    except SQLAlchemyError:
        return ""
    if row is None:
        return ""
    return f"{row.holder}, since {row.acquired_at.astimezone(JST):%Y-%m-%d %H:%M} JST"


def _refused(who: str) -> LockHeldError:
    return LockHeldError(
        f"another edrtrial service ({who or 'its name not yet written'}) runs on this store; "
        "stop it first (two services on one store would poll and mail twice)"
    )


class _Alone:
    """An in-memory SQLite store: this process is the only one that can see it."""

    def lost(self) -> str | None:
        return None

    def release(self) -> None:
        return None


class _FileLock:
    """`flock` on `<database>.lock`: the kernel drops it when the process ends.

    The lock belongs to the file, not to its name: a lock file removed (by hand, by a
    clean-up) would let a second service lock a new file of the same name beside a live
    one. `lost` (asked every few seconds) sees the name no longer leads to our file and
    locks the new one, or stops this service when another service has it already.
    """

    def __init__(self, engine: Engine, path: Path, fd: int, line: str) -> None:
        self.path = path
        self._engine = engine
        self._fd: int | None = fd
        self._line = line
        self._cannot_retake = False

    @classmethod
    def take(cls, engine: Engine, database: Path, holder: str, since: datetime) -> _FileLock:
        # Beside the file itself: a store reached through a symlink (or `..`) is one store,
        # so it must be one lock.
        database = database.resolve()
        path = database.with_name(database.name + ".lock")
        files.private_dir(path.parent)
        line = f"{holder}, since {since.astimezone(JST):%Y-%m-%d %H:%M} JST\n"
        fd = cls._lock(engine, path, line)
        files.warn_if_shared(path)
        return cls(engine, path, fd, line)

    @staticmethod
    def _lock(engine: Engine, path: Path, line: str) -> int:
        """The lock file's descriptor, locked, `line` written in it; or LockHeldError."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, files.PRIVATE_FILE)
        except OSError as err:
            raise StoreError(
                f"cannot open the service lock {path}: {err.strerror}; the service needs to "
                "write beside its database"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            written = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise _refused(_holder_of(engine) or written) from None
        # The holder is written into the file too, for a store whose table cannot be read.
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(), 0)
        return fd

    def _in_place(self, fd: int) -> bool:
        """Whether the lock file's name still leads to the file we hold locked."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def lost(self) -> str | None:
        if self._fd is None:
            return "the service lock was released"
        if self._in_place(self._fd):
            return None
        try:
            fd = self._lock(self._engine, self.path, self._line)
        except LockHeldError as err:
            return f"the service lock {self.path} was removed and {err}"
        except StoreError as err:
            if not self._cannot_retake:
                self._cannot_retake = True
                log.warning("the service lock %s was removed: %s", self.path, err)
            return None  # tried again in a few seconds
        os.close(self._fd)
        self._fd, self._cannot_retake = fd, False
        log.warning("the service lock %s was removed; it is held again", self.path)
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None


class _AdvisoryLock:
    """`pg_try_advisory_lock` on a connection of its own, held for the process's life.

    A lost connection loses the lock: `lost` (asked every few seconds) takes it again on a
    new connection, and says the hold is gone when another service took it meanwhile. While
    the server cannot be reached it keeps trying, as the scheduler waits out the store; a
    service started elsewhere in the seconds between the server's return and our retake
    would own the store, and this one stops.
    """

    _KEY = "SELECT pg_try_advisory_lock(:cls, hashtext(current_schema()))"

    def __init__(self, engine: Engine, holder: str, lock_engine: Engine, conn: Connection) -> None:
        self._engine = engine
        self._holder = holder
        self._lock_engine = lock_engine
        self._conn: Connection | None = conn

    @classmethod
    def _connect(cls, lock_engine: Engine) -> tuple[Connection, bool]:
        conn = lock_engine.connect()
        try:
            got = bool(conn.scalar(text(cls._KEY), {"cls": ADVISORY_CLASS}))
            conn.commit()  # the lock is the session's: it outlives the transaction
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
        return conn, got

    @classmethod
    def take(cls, engine: Engine, holder: str) -> _AdvisoryLock:
        # Its own engine without a pool: the lock's connection is never handed to a job.
        url = make_url(engine.url.render_as_string(hide_password=False))
        lock_engine = create_engine(url, poolclass=NullPool)
        try:
            conn, got = cls._connect(lock_engine)
        except SQLAlchemyError as err:
            lock_engine.dispose()
            raise StoreError(
                f"cannot reach the database {url.render_as_string(hide_password=True)} "
                f"({reason(err)}); check that PostgreSQL runs and database.url"
            ) from err
        if not got:
            lock_engine.dispose()
            raise _refused(_holder_of(engine))
        return cls(engine, holder, lock_engine, conn)

    def lost(self) -> str | None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return None
            except SQLAlchemyError as err:
                log.warning(
                    "the service lock's connection was lost (%s); taking it again", reason(err)
                )
                self._drop()
        try:
            conn, got = self._connect(self._lock_engine)
        except SQLAlchemyError:
            return None  # out of reach: asked again in a few seconds
        if not got:
            return str(_refused(_holder_of(self._engine)))
        self._conn = conn
        log.warning("the service lock is held again")
        return None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        self._drop()  # ending the session lets the advisory lock go
        self._lock_engine.dispose()


PROC_LOCKS = Path("/proc/locks")
"""Where Linux lists every file lock held, with its file's device and inode."""


def is_held(engine: Engine) -> bool | None:
    """Whether a live service holds the store's lock now, asked without taking it.

    Taking the lock to see, even for a moment, could refuse a service starting at that
    moment; so on SQLite the kernel's list of held locks is read, and on PostgreSQL the
    server's `pg_locks`. None when it cannot be told (no `/proc/locks`, an in-memory store,
    the server out of reach): the caller falls back on the `service_lock` row's heartbeat.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if is_memory_sqlite(url.render_as_string(hide_password=False)):
            return None
        database = Path(url.database or "").resolve()
        return _flock_held(database.with_name(database.name + ".lock"))
    if url.get_backend_name() == "postgresql":
        try:
            with engine.connect() as conn:
                return bool(
                    conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND granted AND database = (SELECT oid FROM pg_database"
                            "  WHERE datname = current_database())"
                            " AND classid = :cls AND objsubid = 2"
                            " AND objid::bigint = (hashtext(current_schema())::bigint"
                            "  & 4294967295)"
                        ),
                        {"cls": ADVISORY_CLASS},
                    )
                )
        except SQLAlchemyError:
            return None
    return None


def _flock_held(path: Path) -> bool | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False  # no service has run on this store from this path
    except OSError:
        return None
    key = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    try:
        listed = PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in listed.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"; a waiter's line starts "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            return True
    return False
