"""PostgreSQL's pooled connections: one dropped by the server while idle is replaced before anyone uses it."""

from __future__ import annotations

import math

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storage.db import Database
from tests.conftest import PG_URL

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need TEST_DATABASE_URL (see README)")]


def drop_the_pooled_connection(database: Database) -> None:
    """Use the pool's one connection, then have the server end it (as a restart or an idle timeout would)."""
    with database.read() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other = sqlalchemy.create_engine(PG_URL)
    with other.begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    other.dispose()


@pytest.mark.parametrize("ping_idle_after, replaced", [
    pytest.param(0.0, True, id="checked-when-idle"),
    pytest.param(math.inf, False, id="never-checked"),  # the control: without the check the caller gets the error
])
def test_a_connection_dropped_while_idle_is_replaced_before_use(ping_idle_after: float, replaced: bool) -> None:
    database = Database(PG_URL, ping_idle_after=ping_idle_after)
    try:
        drop_the_pooled_connection(database)
        if replaced:
            with database.read() as session:
                assert session.execute(text("SELECT 1")).scalar_one() == 1
        else:
            with pytest.raises(OperationalError), database.read() as session:
                session.execute(text("SELECT 1"))
    finally:
        database.dispose()
