"""Messages Slack may have posted although its answer never arrived.

A post can reach Slack and its answer be lost: a timeout, a 5xx sent after the message was stored, the process
killed before it recorded the outcome. The row is then sent again, and a plain retry would post a second card,
a second thread reply or a second reminder. So every message the outbox posts carries message metadata naming
it (a card its handoff, any other message its outbox row), and a retry first looks for it: in the channel's
history, or in the thread it was posted to (the `channels:history` / `groups:history` scopes the intake
channels already need). A DM is posted to a person's user id: the look opens that person's DM with the app
(`conversations.open`, `im:write`) and reads it (`im:history`; the app's Messages tab is read-only, so it holds
only what the app wrote there). An app installed from an older manifest lacks those scopes: its DM is posted
again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

_MESSAGE_TS = re.compile(r"\d{1,12}\.\d{1,8}")


def valid_ts(value: object) -> str | None:
    """`value` if it is a message ts as Slack writes it (`1700000000.000100`), else None."""
    return value if isinstance(value, str) and _MESSAGE_TS.fullmatch(value) else None

log = logging.getLogger("handoff_bot.outbox")

CARD_EVENT_TYPE = "handoff_card"
MESSAGE_EVENT_TYPE = "handoff_message"
HISTORY_PAGE_SIZE = 200
HISTORY_PAGES = 10  # 2,000 messages since the first try: a message further back than that is posted again
CLOCK_SKEW = timedelta(minutes=1)  # Slack's clock against ours
# A message posted to a user id goes into the app's DM with that person.
USER_ID_PREFIXES = ("U", "W")
# The look cannot tell (an app created from an older manifest, a thread whose card was deleted): post again.
CANNOT_LOOK_ERRORS = frozenset({"missing_scope", "thread_not_found"})


def card_metadata(handoff_id: int) -> dict[str, Any]:
    """The metadata a card is posted with: what a retry of its post looks for."""
    return {"event_type": CARD_EVENT_TYPE, "event_payload": {"handoff_id": handoff_id}}


def message_metadata(outbox_id: int) -> dict[str, Any]:
    """The metadata any other message is posted with: the outbox row that posts it, unique to that message."""
    return {"event_type": MESSAGE_EVENT_TYPE, "event_payload": {"outbox_id": outbox_id}}


def carries(message: dict[str, Any], metadata: dict[str, Any]) -> bool:
    found = message.get("metadata") or {}
    return bool(
        found.get("event_type") == metadata["event_type"]
        and (found.get("event_payload") or {}) == metadata["event_payload"]
        and message.get("ts")
    )


def find_posted(
    client: WebClient, channel: str, metadata: dict[str, Any], *, since: datetime, thread_ts: str | None = None,
    before_each_page: Callable[[], None] = lambda: None,
) -> str | None:
    """The `ts` of the message carrying `metadata` posted in `channel` (in the thread of `thread_ts` when given)
    after `since`, or None. Raises SlackApiError when Slack refuses the look for a reason that is not in
    CANNOT_LOOK_ERRORS (the post would fail the same way). `before_each_page` runs before each page is asked
    for (the sender renews its lease of the row there: a long look must not outlive it)."""
    try:
        return _search(client, _conversation_of(client, channel), metadata, since=since, thread_ts=thread_ts,
                       before_each_page=before_each_page)
    except SlackApiError as error:
        code = error.response.get("error")
        if code not in CANNOT_LOOK_ERRORS:
            raise
        log.warning("cannot look for an earlier post of %s in %s (%s); posting it again",
                    metadata["event_payload"], channel, code)
        return None


def _conversation_of(client: WebClient, channel: str) -> str:
    """The conversation a message posted to `channel` lands in: for a user id, the app's DM with that person."""
    if not channel.startswith(USER_ID_PREFIXES):
        return channel
    return str(client.conversations_open(users=channel)["channel"]["id"])


def _search(
    client: WebClient, channel: str, metadata: dict[str, Any], *, since: datetime, thread_ts: str | None,
    before_each_page: Callable[[], None],
) -> str | None:
    oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        before_each_page()
        common: dict[str, Any] = {"channel": channel, "oldest": oldest, "limit": HISTORY_PAGE_SIZE,
                                  "include_all_metadata": True, "cursor": cursor}
        if thread_ts:
            page = client.conversations_replies(ts=thread_ts, **common)
        else:
            page = client.conversations_history(**common)
        for message in page.get("messages") or []:
            if carries(message, metadata):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not page.get("has_more") or cursor is None:
            return None
    log.warning("no post of %s in the last %d messages of %s; posting it again",
                metadata["event_payload"], HISTORY_PAGES * HISTORY_PAGE_SIZE, channel)
    return None
