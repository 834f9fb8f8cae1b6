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
        connection = checkpointer.checkpoint()
        assert connection is not None
        connection.close()
        _write_rows(db, 10)
        assert wal.stat().st_size == grown  # all of it was copied back, so the next writes reuse the log
        checkpointer.stop()
    finally:
        db.dispose()


def test_the_checkpointer_thread_keeps_the_log_short(tmp_path: Path) -> None:
    path = tmp_path / "handoffs.db"
    db = Database(f"sqlite:///{path}")  # its own Checkpointer, every second
    try:
        for _ in range(8):  # ~1,200 pages in ~5 s: never copied back, the log would pass 4.8 MB
            _write_rows(db, 50)
            time.sleep(0.6)
        assert path.with_name(path.name + "-wal").stat().st_size < 3 * 1024 * 1024
    finally:
        db.dispose()


def test_a_missing_database_file_is_skipped_quietly(tmp_path: Path) -> None:
    checkpointer = Checkpointer(str(tmp_path / "absent.db"), every=3600)
    assert checkpointer.checkpoint() is None
    checkpointer.stop()
    assert not (tmp_path / "absent.db").exists()  # mode=rw: the checkpointer never creates a database


def test_the_log_restarts_under_a_stream_of_writes(tmp_path: Path) -> None:
    # A PASSIVE checkpoint never waits, so under writes that never pause it ends behind the newest write and
    # the log, never restarted, grew by every page ever written (530 MB in a benchmark's few seconds), and
    # each commit paid for extending the file. The tail copied with the write turn held lets it restart.
    path = tmp_path / "handoffs.db"
    db = Database(f"sqlite:///{path}")
    db._checkpointer.stop()  # type: ignore[union-attr]  # replaced by a faster one, to keep the test short
    checkpointer = Checkpointer(str(path), every=0.05, turn=db._writer_turn)
    try:
        _write_rows(db, 1)
        written, ends = 0, time.monotonic() + 1.5
        while time.monotonic() < ends:  # no pause for a checkpoint to slip into
            _write_rows(db, 20)
            written += 20
        assert written * 4096 > 8 * 1024 * 1024  # enough pages that a log never restarted would pass this
        assert path.with_name(path.name + "-wal").stat().st_size < written * 4096 / 4
    finally:
        checkpointer.stop()
        db.dispose()
