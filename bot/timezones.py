"""People's own time zones (users.info), cached: a nudge due at night waits for its owner's morning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger("handoff_bot.timezones")

KNOWN_FOR_SECONDS = 12 * 3600.0  # people rarely move; a day-old zone is still right almost always
RETRY_AFTER_SECONDS = 600.0  # after a failed lookup, the team's zone stands in for a while
MAX_LOOKUPS_PER_WARM = 50  # bounds the Slack calls one sweep tick may wait for


class UserTimezones:
    """`zone_of(user)` answers from the cache (the team's zone when unknown); `warm(users)` fills it."""

    def __init__(self, client: WebClient, default: ZoneInfo) -> None:
        self.client = client
        self.default = default
        self._known: dict[str, tuple[ZoneInfo, float]] = {}
        self._lock = threading.Lock()

    def zone_of(self, user: str | None) -> ZoneInfo:
        if not user:
            return self.default
        with self._lock:
            known = self._known.get(user)
        return known[0] if known else self.default

    def warm(self, users: Iterable[str]) -> None:
        """Look up the people not known (or known too long ago), at most MAX_LOOKUPS_PER_WARM at once."""
        now = time.monotonic()
        with self._lock:
            stale = [user for user in users if user not in self._known or self._known[user][1] <= now]
        for user in stale[:MAX_LOOKUPS_PER_WARM]:
            zone, keep_for = self._look_up(user)
            with self._lock:
                self._known[user] = (zone, time.monotonic() + keep_for)

    def _look_up(self, user: str) -> tuple[ZoneInfo, float]:
        try:
            response = self.client.users_info(user=user)
            name = str((response.get("user") or {}).get("tz") or "")
            return (ZoneInfo(name) if name else self.default), KNOWN_FOR_SECONDS
        except (SlackApiError, SlackClientError, OSError, ZoneInfoNotFoundError, ValueError) as error:
            log.warning("no time zone for %s (%s); using the team's %s for now", user, error, self.default.key)
            return self.default, RETRY_AFTER_SECONDS
