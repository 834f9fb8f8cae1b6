"""Wires settings, configuration, database and the domain service together, once per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.people import People
from bot.settings import Settings
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
    people: People | None = None  # people as Slack describes them (time zone, a person at all), when Slack is wired

    def own_zone(self, user: str | None) -> ZoneInfo:
        """`user`'s own time zone, looked up now when not known (a click's short wait at most); else the team's."""
        return self.people.own_zone(user) if self.people and user else self.config.zone

    def why_cannot_own(self, user: str | None, *, named: str | None = None) -> str | None:
        return self.people.why_cannot_own(user, named=named) if self.people and user else None

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
