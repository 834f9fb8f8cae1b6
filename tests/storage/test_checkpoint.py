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
