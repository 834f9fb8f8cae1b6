"""Wires settings, configuration, database and the domain service together, once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.settings import Settings
from bot.timezones import UserTimezones
from handoffs.config import HandoffConfig
from handoffs.nudges import earliest_look
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
    timezones: UserTimezones | None = None  # people's own time zones, when Slack is wired

    def zone_of(self, user: str | None) -> ZoneInfo:
        return self.timezones.zone_of(user) if self.timezones else self.config.zone

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
    repo = Repository(db, next_look=lambda handoff: earliest_look(handoff, config))
    service = HandoffService(repo, config, clock, accept_callbacks=settings.webhook_secret is not None)
    return Runtime(settings, config, db, repo, service, clock)
