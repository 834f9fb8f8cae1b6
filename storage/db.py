"""Engines and transactions. SQLite runs in WAL mode, and write transactions take the lock up front."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_IDLE_AFTER_SECONDS = 10.0
CHECKPOINT_EVERY_SECONDS = 1.0
WRITER_CACHE_KIB = 16 * 1024
# Transaction-scoped, like SET LOCAL (which takes no bound parameter): the pooled connection keeps its own setting.
_STATEMENT_TIMEOUT_FOR_TRANSACTION = text("SELECT set_config('statement_timeout', :timeout, true)")

log = logging.getLogger("handoff_bot.db")


def _journal_in_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL` on a new connection. SQLite can answer it "database is locked" at once, without
    waiting on the busy timeout (it does not wait where waiting could deadlock: a fresh file's first connections
    switching it to WAL together): tried again for a while, as the busy timeout would have."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: str, *, immediate: bool, checkpoint_elsewhere: bool) -> Engine:
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
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _journal_in_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if immediate:  # a writer: an SLA sweep rewrites rows all over the file (the default cache is 2 MB)
            cursor.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        if checkpoint_elsewhere:
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's thread does it, off every commit
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without waiting;
        # writers take the write lock at BEGIN and queue on busy_timeout instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class WriterTurn:
    """One SQLite writer at a time, across threads and processes, queued without sleeping.

    Threads of this process queue on an RLock; processes (`serve --workers N`) on a blocking `flock` of a
    file beside the database, taken inside the RLock for the whole write transaction. SQLite's own busy
    handler polls with sleeps of up to 100 ms and made write latency spiky; it stays only as a fallback
    for writers that do not take this turn (another program on the same file).
    """

    def __init__(self, database_path: str | None) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # nested turns of the thread holding the RLock: flock once, unlock at the outermost
        self._fd: int | None = None
        if database_path:
            self._fd = os.open(f"{database_path}.write-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self) -> None:
        self._lock.acquire()
        if self._depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Checkpointer:
    """Copies SQLite's write-ahead log back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages of log, and with it an
    fsync of the database file: tens of milliseconds added to one unlucky write while it holds the write
    lock (an SLA sweep's commit, or one intake request's p99). A PASSIVE checkpoint never waits for writers
    or readers, so running it every second here takes that cost off every write. Under writes that never
    pause, though, it always ends behind the newest commit, and SQLite restarts the log only after a checkpoint
    that copied all of it: the log grew by every page ever written, and each commit paid for extending the
    file (a claim's commit cost 420 µs of CPU instead of 90). So the bulk is copied without the write turn and
    the short tail written meanwhile with it held: the next writer starts the log again from its beginning.
    """

    def __init__(
        self, database_path: str, every: float = CHECKPOINT_EVERY_SECONDS, *, turn: WriterTurn | None = None
    ) -> None:
        self.database_path = database_path
        self.every = every
        self.turn = turn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every):
                connection = self.checkpoint(connection)
            connection = self.checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def checkpoint(self, connection: sqlite3.Connection | None = None) -> sqlite3.Connection | None:
        """Copy the log back (see above), on `connection` or a new one; returns the connection to use next time."""
        try:
            if connection is None:  # mode=rw: never create a database that is not there (yet)
                connection = sqlite3.connect(f"file:{quote(self.database_path)}?mode=rw", uri=True,
                                             timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self.turn or nullcontext():  # still PASSIVE: a long reader makes it end short, never wait
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return connection
        except sqlite3.Error as error:  # not created yet, or gone (a test's temporary database)
            log.debug("SQLite checkpoint skipped: %s", error)
            if connection is not None:
                connection.close()
            return None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


_IDLE_SINCE = "handoff_idle_since"


def ping_when_idle(engine: Engine, after: float) -> None:
    """Check a pooled connection before use once it has been idle `after` seconds (the server may have been
    restarted, or dropped it, meanwhile); one in steady use is not checked. SQLAlchemy's `pool_pre_ping`
    checks on every checkout, a round trip that was a tenth of an intake's time on PostgreSQL. A connection
    that fails the check is replaced before the caller sees it."""

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < after:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(f"an idle pooled connection was dropped: {error}") from error


def is_postgres(session: OrmSession) -> bool:
    """Whether a session talks to PostgreSQL (where bulk writes take the server's own faster paths)."""
    return session.get_bind().dialect.name == "postgresql"


def _file_path(url: str) -> str | None:
    """The database file of a SQLite URL; None for an in-memory or URI database."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


class Database:
    """One database: a writer engine and a reader engine (the same pool on PostgreSQL)."""

    def __init__(self, url: str, *, echo: bool = False, ping_idle_after: float = PING_IDLE_AFTER_SECONDS) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = _file_path(url)
            self.writer = _sqlite_engine(url, immediate=True, checkpoint_elsewhere=path is not None)
            self.reader = _sqlite_engine(url, immediate=False, checkpoint_elsewhere=path is not None)
            self._writer_turn: WriterTurn | None = WriterTurn(path)
            self._checkpointer: Checkpointer | None = Checkpointer(path, turn=self._writer_turn) if path else None
        else:
            self.writer = create_engine(url, pool_size=10, max_overflow=20, echo=echo)
            ping_when_idle(self.writer, ping_idle_after)
            self.reader = self.writer
            self._writer_turn = None
            self._checkpointer = None

    @contextmanager
    def write(self) -> Iterator[Session]:
        # The turn is taken after the Session is made and let go before it closes (returning its connection
        # to the pool): each waits for the GIL again, and the other processes' writes waited meanwhile.
        with Session(self.writer, expire_on_commit=False) as session, self._writer_turn or nullcontext(), \
                session.begin():
            yield session

    @contextmanager
    def read(self, *, statement_timeout: float | None = None) -> Iterator[Session]:
        """A read transaction. With `statement_timeout` (seconds), each of its statements on PostgreSQL gives up
        after that long, waiting for a lock included: for a caller that must answer soon, such as the health
        check. SQLite needs none: a reader in WAL mode never waits for a writer."""
        with Session(self.reader, expire_on_commit=False) as session, session.begin():
            if statement_timeout is not None and not self.is_sqlite:
                milliseconds = max(1, round(statement_timeout * 1000))  # 0 would mean no limit at all
                session.execute(_STATEMENT_TIMEOUT_FOR_TRANSACTION, {"timeout": f"{milliseconds}ms"})
            yield session

    @contextmanager
    def read_cursor(self) -> Iterator[DBAPICursor]:
        """A DBAPI cursor on a pooled reader connection, for one prepared SELECT (see `storage.lean`).

        A single statement needs no transaction block of ours: SQLite runs it in autocommit, and PostgreSQL's
        implicit transaction is rolled back when the pool takes the connection back. Without SQLAlchemy's
        connection, transaction and result objects, the one-row read every click does costs a fifth as much.
        """
        connection = self.reader.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            connection.close()

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
            self._checkpointer = None
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
        if self._writer_turn is not None:
            self._writer_turn.close()
