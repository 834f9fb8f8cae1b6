"""Engines and transactions. SQLite runs in WAL mode, and write transactions take the lock up front."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without waiting;
        # writers take the write lock at BEGIN and queue on busy_timeout instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


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
        else:
            self.writer = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, echo=echo)
            self.reader = self.writer
            self._write_lock = None

    @contextmanager
    def write(self) -> Iterator[Session]:
        with (self._write_lock or nullcontext()), Session(self.writer, expire_on_commit=False) as session, \
                session.begin():
            yield session

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
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
