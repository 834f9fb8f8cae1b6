"""SQLite's write-ahead log is copied back by the Checkpointer's thread, never inside a writer's commit."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from storage.db import Checkpointer, Database


def _write_rows(db: Database, count: int) -> None:
    with db.write() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(count):
        with db.write() as session:
            session.execute(text("INSERT INTO filler (body) VALUES (:body)"), {"body": "x" * 3000})


def test_commits_do_not_checkpoint_and_the_checkpointer_does(tmp_path: Path) -> None:
    path = tmp_path / "handoffs.db"
    db = Database(f"sqlite:///{path}")
    db._checkpointer.stop()  # type: ignore[union-attr]  # this test runs the checkpoint itself
    try:
        with db.writer.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        _write_rows(db, 1500)  # ~1,500 pages: past SQLite's automatic threshold of 1,000
        wal = path.with_name(path.name + "-wal")
        grown = wal.stat().st_size
        assert grown > 1000 * 4096  # no commit copied the log back and restarted it
        checkpointer = Checkpointer(str(path), every=3600)
        own_connection = checkpointer.checkpoint()
        assert own_connection is not None
        own_connection.close()
        _write_rows(db, 10)
        assert wal.stat().st_size == grown  # all of it was copied back, so the next writes reuse the log
        checkpointer.stop()
    finally:
        db.dispose()


def test_a_missing_database_file_is_skipped_quietly(tmp_path: Path) -> None:
    checkpointer = Checkpointer(str(tmp_path / "absent.db"), every=3600)
    assert checkpointer.checkpoint() is None
    checkpointer.stop()
    assert not (tmp_path / "absent.db").exists()  # mode=rw: the checkpointer never creates a database


def _log_salt(wal: Path) -> bytes:
    with wal.open("rb") as log:
        return log.read(32)[16:24]  # the header's salts: SQLite draws new ones each time it restarts the log


def test_the_checkpointer_thread_restarts_the_log_under_writes_that_never_pause(tmp_path: Path) -> None:
    # A PASSIVE checkpoint never waits, so under writes that never pause it always ended behind the newest
    # commit, and the log, never restarted, grew by every page written (530 MB in a benchmark's few seconds)
    # while each commit paid for extending the file. Its tail is copied with the write turn held, so it restarts.
    path = tmp_path / "handoffs.db"
    db = Database(f"sqlite:///{path}")  # its own Checkpointer, every second
    try:
        _write_rows(db, 1)
        wal = path.with_name(path.name + "-wal")
        first = _log_salt(wal)
        ends = time.monotonic() + 2.5
        while time.monotonic() < ends:  # no pause for a checkpoint to slip into
            _write_rows(db, 20)
        assert _log_salt(wal) != first
    finally:
        db.dispose()
