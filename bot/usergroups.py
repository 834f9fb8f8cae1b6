"""Who is in which Slack user group, from `usergroups.users.list`, cached for a few minutes.

Only the outbox sender asks (when it builds an App Home), never a listener: a Slack call here may be slow.
A group Slack will not list (deleted, no scope, Slack down) counts as empty until the next refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger("handoff_bot.usergroups")

CACHE_SECONDS = 300.0
FAILURE_CACHE_SECONDS = 30.0


class UsergroupMembers:
    def __init__(
        self, client: WebClient, *, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}  # group -> (expires at, members)
        self._lock = threading.Lock()

    def groups_of(self, user: str, groups: Iterable[str]) -> frozenset[str]:
        """The groups among `groups` that `user` belongs to."""
        return frozenset(group for group in groups if user in self.members(group))

    def members(self, group: str) -> frozenset[str]:
        now = self.clock()
        with self._lock:
            cached = self._members.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group)
            members, ttl = frozenset(str(user) for user in response.get("users") or []), self.ttl
        except (SlackApiError, SlackClientError, OSError) as error:
            log.warning("could not list the members of user group %s: %s", group, error)
            members, ttl = (cached[1] if cached else frozenset()), FAILURE_CACHE_SECONDS
        with self._lock:
            self._members[group] = (now + ttl, members)
        return members
