"""`GET /healthz` over real HTTP: 200 while the database answers, 503 otherwise (SPEC §6), never a 500 or a hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy
from sqlalchemy import text

from bot.runtime import Runtime
from storage.outbox import FAILED, OutboxStore
from storage.tables import OutboxRow
from tests.conftest import BACKENDS, LiveServer


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        yield http


def add_failed_deliveries(runtime: Runtime, failures: list[tuple[datetime, str]]) -> None:
    """Webhook rows that failed at these times with these errors, written in this order (ascending ids)."""
    rows = [OutboxRow(kind="webhook", target="https://hooks.example.com/x", state=FAILED, next_attempt_at=at,
                      created_at=at - timedelta(days=1), done_at=at, last_error=error) for at, error in failures]
    with runtime.db.write() as session:
        session.add_all(rows)


@contextmanager
def outbox_table_away(runtime: Runtime) -> Iterator[None]:
    """The outbox table gone for a while (as after restoring the wrong file or dropping the schema), then back."""
    with runtime.db.write() as session:
        session.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
    try:
        yield
    finally:
        with runtime.db.write() as session:
            session.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_healthz_is_503_with_a_reason_when_the_database_answers_but_its_query_fails(
    anonymous: httpx.Client, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """`SELECT 1` answers, the outbox query does not: it was a bare 500, a traceback in the log."""
    assert anonymous.get("/healthz").status_code == 200
    with outbox_table_away(runtime):
        response = anonymous.get("/healthz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["ok"] is False and body["database"] == "failing"
    assert "outbox" in body["error"] and "\n" not in body["error"]
    [logged] = [record for record in caplog.records if record.name == "handoff_bot.api"]
    assert logged.levelname == "WARNING" and logged.exc_info is None and body["error"] in logged.getMessage()
    assert anonymous.get("/healthz").status_code == 200


POSTGRES = [param for param in BACKENDS if param.id == "postgres"]


@contextmanager
def outbox_locked_by_another_session(runtime: Runtime) -> Iterator[None]:
    """Another session holds the outbox table so that nothing may read it (a migration, a VACUUM FULL, a stuck
    transaction) until the block ends. (SQLite has no such wait: its readers never wait for a writer in WAL.)"""
    engine = sqlalchemy.create_engine(runtime.settings.database_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", POSTGRES, indirect=True)
def test_healthz_answers_503_within_seconds_while_the_outbox_is_locked(anonymous: httpx.Client,
                                                                      runtime: Runtime) -> None:
    """It waited for ever: no statement or lock timeout."""
    assert anonymous.get("/healthz").status_code == 200
    with outbox_locked_by_another_session(runtime):
        started = time.monotonic()
        response = anonymous.get("/healthz", timeout=15)
        took = time.monotonic() - started
    assert (response.status_code, response.json()["database"]) == (503, "failing")
    assert "statement timeout" in response.json()["error"]
    assert took < 5, took
    assert anonymous.get("/healthz").status_code == 200


@pytest.mark.parametrize("backend", POSTGRES, indirect=True)
def test_the_health_check_time_limit_is_not_left_on_the_pooled_connection(runtime: Runtime) -> None:
    """Only the health check gives up early: later reads on the same pooled connection wait as before."""
    OutboxStore(runtime.db).health(statement_timeout=0.5)
    with runtime.db.read() as session:
        assert session.execute(text("SHOW statement_timeout")).scalar() == "0"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_last_failure_is_the_latest_to_fail_not_the_newest_row(anonymous: httpx.Client, runtime: Runtime) -> None:
    """An old row retried for a day that finally fails is the news; it never showed while a younger row had
    failed earlier (the failed row with the highest id was shown)."""
    now = datetime.now(UTC)
    add_failed_deliveries(runtime, [(now, "gave up after 40 attempts: HTTP 503"),
                                    (now - timedelta(hours=5), "channel_not_found")])
    outbox = anonymous.get("/healthz").json()["outbox"]
    assert (outbox["failed"], outbox["last_failure"]) == (2, "gave up after 40 attempts: HTTP 503")
