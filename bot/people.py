"""People as Slack knows them (users.info), cached: their own time zone (a nudge due at night waits for its
owner's morning), and whether they can own a handoff at all (not a bot, not deactivated)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as LookupTooSlow
from dataclasses import dataclass
from http.client import HTTPException
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger("handoff_bot.people")

KNOWN_FOR_SECONDS = 12 * 3600.0  # people rarely move or leave; a day-old answer is still right almost always
RETRY_AFTER_SECONDS = 600.0  # after a failed lookup, the team's zone stands in for a while
MAX_LOOKUPS_PER_WARM = 50  # bounds the Slack calls one sweep tick may wait for
CLICK_WAIT_SECONDS = 0.3  # what a click or command waits for a lookup; it must still be answered at once
SLACKBOT = "USLACKBOT"  # a bot that users.info does not call one
# What a missing or broken answer raises through slack_sdk's urllib client: an API error, no connection, an answer
# cut short or garbled (http.client's IncompleteRead, BadStatusLine… are neither OSError nor ValueError), bad JSON.
LOOKUP_FAILURES = (SlackClientError, OSError, ValueError, HTTPException)


@dataclass(frozen=True)
class Person:
    zone: ZoneInfo
    is_bot: bool = False
    deactivated: bool = False
    unknown: bool = False  # no such user in this workspace


class People:
    """`zone_of(user)` answers from the cache (the team's zone when unknown); `warm(users)` fills it;
    `why_cannot_own(user)` looks a person up if need be, waiting no longer than a click can."""

    def __init__(self, client: WebClient, default: ZoneInfo, *, click_wait: float = CLICK_WAIT_SECONDS) -> None:
        self.client = client
        self.default = default
        self.click_wait = click_wait
        self._known: dict[str, tuple[Person, float]] = {}
        self._lock = threading.Lock()
        self._lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="users-info")

    def zone_of(self, user: str | None) -> ZoneInfo:
        person = self._cached(user) if user else None
        return person.zone if person else self.default

    def knows(self, user: str) -> bool:
        """Whether `user` was looked up (or tried: a failed lookup stands for a while), however long ago."""
        with self._lock:
            return user in self._known

    def warm(self, users: Iterable[str]) -> None:
        """Look up the people not known (or known too long ago), at most MAX_LOOKUPS_PER_WARM at once."""
        now = time.monotonic()
        with self._lock:
            stale = [user for user in users if user not in self._known or self._known[user][1] <= now]
        for user in stale[:MAX_LOOKUPS_PER_WARM]:
            self._look_up(user)

    def why_cannot_own(self, user: str, *, named: str | None = None) -> str | None:
        """Why `user` cannot own a handoff (a bot, a deactivated account), or None; `named` is how the answer
        calls them (a mention by default; a modal's inline error is plain text). Someone Slack does not
        describe in time (slow, down) is let through: a handoff is better handed on than the click refused."""
        if user == SLACKBOT:
            return "Slackbot cannot own a handoff; pick a person."
        person = self._within_a_click(user)
        if person is None:
            return None
        if person.unknown:
            return f"Slack knows no user {user} in this workspace; pick someone from the list."
        who = named or f"<@{user}>"
        if person.is_bot:
            return f"{who} is an app, not a person; a handoff needs a person to own it."
        if person.deactivated:
            return f"{who} is deactivated; pick someone who can act on it."
        return None

    def own_zone(self, user: str) -> ZoneInfo:
        """`user`'s own time zone, looked up now if need be (as long as a click can wait); else the team's."""
        person = self._within_a_click(user)
        return person.zone if person else self.default

    def _within_a_click(self, user: str) -> Person | None:
        person = self._cached(user, fresh=True)
        if person is not None:
            return person
        try:
            return self._lookups.submit(self._look_up, user).result(timeout=self.click_wait)
        except LookupTooSlow:
            log.warning("users.info for %s took over %.1f s; going on without it", user, self.click_wait)
            return None

    def _cached(self, user: str, *, fresh: bool = False) -> Person | None:
        with self._lock:
            known = self._known.get(user)
        if known is None or (fresh and known[1] <= time.monotonic()):
            return None
        return known[0]

    def _look_up(self, user: str) -> Person:
        try:
            person, keep_for = self._ask_slack(user)
        except LOOKUP_FAILURES as error:
            person, keep_for = self._not_looked_up(user, error)
        except Exception as error:  # unforeseen: logged whole, but one person must not stop everyone's reminders
            log.exception("users.info for %s failed unexpectedly", user)
            person, keep_for = self._not_looked_up(user, error)
        with self._lock:
            self._known[user] = (person, time.monotonic() + keep_for)
        return person

    def _ask_slack(self, user: str) -> tuple[Person, float]:
        try:
            found = self.client.users_info(user=user).get("user") or {}
        except SlackApiError as error:
            if error.response.get("error") != "user_not_found":
                raise
            return Person(self.default, unknown=True), KNOWN_FOR_SECONDS
        person = Person(self._zone(found.get("tz")), is_bot=bool(found.get("is_bot")),
                        deactivated=bool(found.get("deleted")))
        return person, KNOWN_FOR_SECONDS

    def _not_looked_up(self, user: str, error: Exception) -> tuple[Person, float]:
        log.warning("could not look up %s (%s); using the team's %s for now", user, error, self.default.key)
        return Person(self.default), RETRY_AFTER_SECONDS

    def _zone(self, name: object) -> ZoneInfo:
        try:
            return ZoneInfo(str(name)) if name else self.default
        except (ZoneInfoNotFoundError, ValueError):
            return self.default
