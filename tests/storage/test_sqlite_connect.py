"""A fresh SQLite file: its first connections, opened at once, all open (none told "database is locked")."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from storage.db import Database

FILES = 60
CONNECTIONS = 6


def open_at_once(db: Database) -> list[BaseException]:
    """Each thread opens its own new connection (readers and writers) and uses it, all released together."""
    errors: list[BaseException] = []
    start = threading.Barrier(CONNECTIONS)

    def connect(index: int) -> None:
        engine = db.writer if index % 2 else db.reader
        try:
            start.wait()
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except BaseException as error:  # collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=connect, args=(index,)) for index in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_the_first_connections_to_a_new_file_all_open_when_made_at_once(tmp_path: Path) -> None:
    # SQLite can refuse `PRAGMA journal_mode=WAL` with "database is locked" at once, without its busy timeout,
    # while other first connections switch the new file to WAL: about one new file in thirty here before the fix.
    for number in range(FILES):
        db = Database(f"sqlite:///{tmp_path / f'fresh-{number}.db'}")
        try:
            errors = open_at_once(db)
        finally:
            db.dispose()
        assert not errors, f"file {number}: {errors[0]!r}"
