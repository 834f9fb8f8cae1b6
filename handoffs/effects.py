"""Which outbox effects each change causes. The Slack side renders them at send time."""

from __future__ import annotations

from typing import Any

from handoffs.lifecycle import Actor, Change
from handoffs.ports import Effect

POST_CARD = "slack.post_card"
UPDATE_CARD = "slack.update_card"
THREAD_REPLY = "slack.thread_reply"
EPHEMERAL = "slack.ephemeral"


def effects_for_created(channel: str) -> list[Effect]:
    return [Effect(POST_CARD, channel)]


def effects_for_change(channel: str | None, change: Change, actor: Actor) -> list[Effect]:
    if channel is None:
        return []
    note = {"event": change.event, "actor": actor.id, "actor_is_system": actor.is_system, "data": change.data}
    return [Effect(UPDATE_CARD, channel), Effect(THREAD_REPLY, channel, note)]


def private_notice(channel: str, user: str, text: str, blocks: list[dict[str, Any]] | None = None) -> Effect:
    """A message only `user` sees in `channel` (e.g. why their click was refused)."""
    return Effect(EPHEMERAL, channel, {"user": user, "text": text, **({"blocks": blocks} if blocks else {})})
