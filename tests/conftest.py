"""Shared fixtures: a fresh database per test (SQLite file, or a PostgreSQL schema), a runtime, a live server."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
import uvicorn
from alembic.script import ScriptDirectory

from bot.runtime import Runtime, build_runtime
from bot.server import create_asgi_app
from bot.settings import Settings
from handoffs.config import HandoffConfig, parse_config
from storage import migrate

API_TOKEN = "test-token-0123456789"
API_TOKEN_NAME = "producer"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need TEST_DATABASE_URL (see README)"),
        ],
    ),
]


def _pg_schema_url(schema: str) -> str:
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], None]:
    """Writes a SQLite database at the newest schema to a path: a copy of one migrated once for the session
    (running every migration took ~0.3 s a test; the runtime's own upgrade then finds it at head)."""
    template: list[Path] = []

    def copy_to(path: Path) -> None:
        if not template:
            template.append(tmp_path_factory.mktemp("schema") / "template.db")
            migrate.upgrade(f"sqlite:///{template[0]}")
        with sqlite3.connect(template[0]) as source, sqlite3.connect(path) as target:
            source.backup(target)

    return copy_to


class PostgresSchemas:
    """PostgreSQL schemas for tests: a new one, or one a finished test left at the newest revision, emptied (its
    tables truncated, their ids restarted), so that most tests skip running every migration (~0.4 s)."""

    def __init__(self) -> None:
        self._engine = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.pool.NullPool) if PG_URL else None
        self._ready: list[str] = []
        self._head = ScriptDirectory.from_config(migrate.alembic_config(PG_URL or "sqlite://")).get_current_head()

    def take(self) -> str:
        if self._ready:
            return self._ready.pop()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        self._run(f"CREATE SCHEMA {schema}")
        return schema

    def give_back(self, schema: str) -> None:
        """Empty it for the next test if it is at the newest revision; drop it otherwise (or if that fails)."""
        try:
            emptied = self._empty(schema)
        except sqlalchemy.exc.DBAPIError:  # never migrated, or a connection left behind holds a lock
            emptied = False
        if emptied:
            self._ready.append(schema)
        else:
            self.drop(schema)

    def _empty(self, schema: str) -> bool:
        """Truncates its tables; False, and nothing done, when it is not at the newest revision."""
        assert self._engine is not None
        with self._engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            version = connection.exec_driver_sql(f"SELECT version_num FROM {schema}.alembic_version").scalar()
            if version != self._head:
                return False
            tables = connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = %(schema)s AND tablename <> 'alembic_version'",
                {"schema": schema},
            ).scalars().all()
            if tables:
                names = ", ".join(f"{schema}.{table}" for table in tables)
                connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        return True

    def drop(self, schema: str) -> None:
        self._run(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def close(self) -> None:
        for schema in self._ready:
            self.drop(schema)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self, statement: str) -> None:
        assert self._engine is not None
        with self._engine.begin() as connection:
            connection.exec_driver_sql(statement)


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas()
    yield schemas
    schemas.close()


@pytest.fixture
def make_database_url(
    tmp_path: Path, migrated_sqlite: Callable[[Path], None], postgres_schemas: PostgresSchemas
) -> Iterator[Callable[[str], str]]:
    """Returns a function giving a fresh database URL for a backend, with no data in it (a SQLite file at the
    newest schema already; a PostgreSQL schema new, or emptied at the newest revision); cleans up after the test."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path / f"handoffs-{uuid.uuid4().hex[:8]}.db"
            migrated_sqlite(path)
            return f"sqlite:///{path}"
        schema = postgres_schemas.take()
        schemas.append(schema)
        return _pg_schema_url(schema)

    yield make
    for schema in schemas:
        postgres_schemas.give_back(schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, make_database_url: Callable[[str], str]) -> str:
    return make_database_url(backend)


DEFAULT_CONFIG: dict[str, Any] = {
    "managers": ["UMANAGER"],
    "review": {"confidence_below": 0.7, "channel": "CREVIEW", "approvers": ["ULEAD"]},
    "kinds": {
        "lead": {
            "required_facts": ["company", "contact"],
            "intents": ["demo", "pricing", "partnership"],
            "outcomes": ["won", "lost", "nurture", "disqualified"],
        },
    },
    "routes": [
        {
            "name": "hot-leads",
            "when": {"kind": "lead", "urgency": ["high", "urgent"]},
            "channel": "CSALES",
            "owners": {"round_robin": ["UANNA", "UBEN"]},
            "approvers": ["UMANAGER"],
        },
        {"name": "default", "channel": "CHANDOFFS"},
    ],
}


@pytest.fixture
def handoff_config() -> HandoffConfig:
    return parse_config(DEFAULT_CONFIG)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_tokens": {API_TOKEN: API_TOKEN_NAME},
        "default_channel": "CHANDOFFS",
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": "test-signing-secret",
        "webhook_secret": WEBHOOK_SECRET,
        "port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def runtime(database_url: str, handoff_config: HandoffConfig) -> Iterator[Runtime]:
    rt = build_runtime(make_settings(database_url), config=handoff_config)
    yield rt
    rt.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving an ASGI app on a loopback port, in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    with LiveServer(create_asgi_app(runtime)) as server:
        yield server


@pytest.fixture
def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}
