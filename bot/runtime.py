"""Wires settings, configuration, database and the domain service together, once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.settings import Settings
from handoffs.config import HandoffConfig
from handoffs.service import HandoffService, utc_now
from storage import migrate
from storage.db import Database
from storage.repository import Repository


@dataclass
class Runtime:
    settings: Settings
    config: HandoffConfig
    db: Database
    repo: Repository
    service: HandoffService
    clock: Callable[[], datetime]
    notify: Callable[[], None] = lambda: None  # wakes the outbox sender after a write

    def close(self) -> None:
        self.db.dispose()


def build_runtime(
    settings: Settings,
    *,
    config: HandoffConfig | None = None,
    run_migrations: bool = True,
    clock: Callable[[], datetime] = utc_now,
) -> Runtime:
    config = config or settings.load_handoff_config()
    if run_migrations:
        migrate.upgrade(settings.database_url)
    db = Database(settings.database_url)
    repo = Repository(db)
    return Runtime(settings, config, db, repo, HandoffService(repo, config, clock), clock)
