"""Engines and transactions. SQLite runs in WAL mode, and write transactions take the lock up front."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CHECKPOINT_SECONDS = 0.2  # how soon after a write the background checkpoint runs
SQLITE_AUTOCHECKPOINT_PAGES = 10_000  # SQLite's own checkpoint in the committing writer: a safety net only


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if immediate:  # writers: checkpoints are _Checkpointer's job (see there)
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without waiting;
        # writers take the write lock at BEGIN and queue on busy_timeout instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class _Checkpointer:
    """Copies the SQLite WAL back into the database file from a thread of its own, shortly after writes.

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages (every ~50 intakes),
    with an fsync, while that writer holds the write lock: it took 10-30 ms and every queued write waited
    behind it (intake p99 ~100 ms). A PASSIVE checkpoint here never blocks writers or readers; the automatic
    one stays, at SQLITE_AUTOCHECKPOINT_PAGES, in case this thread cannot keep up or cannot open the file.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def touch(self) -> None:
        """A write happened: checkpoint soon (the thread starts on the first write)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                    self._thread.start()
        self._dirty.set()

    def _run(self) -> None:
        try:  # mode=rw: never create a file that is gone
            connection = sqlite3.connect(f"file:{quote(self._path)}?mode=rw", uri=True, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while not self._stop.is_set():
                self._dirty.wait()
                if self._stop.wait(SQLITE_CHECKPOINT_SECONDS):  # let a burst of writes gather first
                    break
                self._dirty.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # e.g. the file is being replaced; the next write tries again
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


class Database:
    """One database: a writer engine and a reader engine (the same pool on PostgreSQL)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.writer = _sqlite_engine(url, immediate=True)
            self.reader = _sqlite_engine(url, immediate=False)
            # SQLite has one writer at a time. Threads of this process queue on this lock (FIFO-ish, no
            # sleeping) instead of on SQLite's busy handler, which polls with sleeps of up to 100 ms and
            # made write latency spiky under concurrent intake; other processes still meet busy_timeout.
            self._write_lock: threading.RLock | None = threading.RLock()
            path = self.writer.url.database
            self._checkpointer = _Checkpointer(path) if path and path != ":memory:" else None
            if self._checkpointer is not None:  # also when the Database is dropped without dispose()
                weakref.finalize(self, self._checkpointer.stop)
        else:
            self.writer = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, echo=echo)
            self.reader = self.writer
            self._write_lock = None
            self._checkpointer = None

    @contextmanager
    def write(self) -> Iterator[Session]:
        with (self._write_lock or nullcontext()), Session(self.writer, expire_on_commit=False) as session, \
                session.begin():
            yield session
        if self._checkpointer is not None:
            self._checkpointer.touch()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.reader, expire_on_commit=False) as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with self.reader.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
