"""Cards Slack may have posted although its answer never arrived.

A card post can reach Slack and its answer be lost: a timeout, a 5xx sent after the message was stored, the
process killed before it recorded the `ts`. The row is then sent again, and a plain retry would post a second
card. So every card carries message metadata naming its handoff, and a retry first looks for it in the
channel's history (the `channels:history` / `groups:history` scopes the intake channels already need).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient

log = logging.getLogger("handoff_bot.outbox")

CARD_EVENT_TYPE = "handoff_card"
HISTORY_PAGE_SIZE = 200
HISTORY_PAGES = 10  # 2,000 messages since the first try: a card further back than that is posted again
CLOCK_SKEW = timedelta(minutes=1)  # Slack's clock against ours


def card_metadata(handoff_id: int) -> dict[str, Any]:
    """The metadata a card is posted with: what `find_posted_card` looks for."""
    return {"event_type": CARD_EVENT_TYPE, "event_payload": {"handoff_id": handoff_id}}


def is_card_of(message: dict[str, Any], handoff_id: int) -> bool:
    metadata = message.get("metadata") or {}
    return bool(
        metadata.get("event_type") == CARD_EVENT_TYPE
        and (metadata.get("event_payload") or {}).get("handoff_id") == handoff_id
        and message.get("ts")
    )


def find_posted_card(client: WebClient, channel: str, handoff_id: int, *, since: datetime) -> str | None:
    """The `ts` of the card of `handoff_id` posted in `channel` after `since`, or None; newest messages first."""
    oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        page = client.conversations_history(
            channel=channel, oldest=oldest, limit=HISTORY_PAGE_SIZE, include_all_metadata=True, cursor=cursor,
        )
        for message in page.get("messages") or []:
            if is_card_of(message, handoff_id):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not page.get("has_more") or cursor is None:
            return None
    log.warning("no card of %s in the last %d messages of %s; posting it again",
                handoff_id, HISTORY_PAGES * HISTORY_PAGE_SIZE, channel)
    return None
