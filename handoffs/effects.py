"""Which outbox effects each change causes. The Slack side renders them at send time."""

from __future__ import annotations

from typing import Any

from handoffs.lifecycle import Actor, Change
from handoffs.model import TERMINAL, Handoff
from handoffs.ports import Effect

POST_CARD = "slack.post_card"
UPDATE_CARD = "slack.update_card"
THREAD_REPLY = "slack.thread_reply"
EPHEMERAL = "slack.ephemeral"


def effects_for_created(channel: str) -> list[Effect]:
    return [Effect(POST_CARD, channel)]


def effects_for_change(handoff: Handoff, change: Change, actor: Actor) -> list[Effect]:
    """The card's update and its thread reply; when the change ends a handoff that came from a Slack
    message, also the outcome in that message's thread (closing the loop)."""
    effects: list[Effect] = []
    note = {"event": change.event, "actor": actor.id, "actor_is_system": actor.is_system, "data": change.data}
    if handoff.channel is not None:
        effects += [Effect(UPDATE_CARD, handoff.channel), Effect(THREAD_REPLY, handoff.channel, note)]
    if change.to_status in TERMINAL and handoff.source_channel and handoff.source_ts:
        effects.append(Effect(OUTCOME_REPLY, handoff.source_channel, {"thread_ts": handoff.source_ts, **note}))
    return effects


def private_notice(channel: str, user: str, text: str, blocks: list[dict[str, Any]] | None = None) -> Effect:
    """A message only `user` sees in `channel` (e.g. why their click was refused)."""
    return Effect(EPHEMERAL, channel, {"user": user, "text": text, **({"blocks": blocks} if blocks else {})})


# Replies about a Slack message a handoff came from (the message shortcut, intake channels).
SOURCE_REPLY = "slack.source_reply"
OUTCOME_REPLY = "slack.outcome_reply"  # how it ended and who decided, rendered at send time from the event
MESSAGE_REPLY = "slack.message_reply"
REACTION = "slack.reaction"


def source_reply(channel: str, ts: str, *, note: str = "created") -> Effect:
    """A reply in the thread of the message (`channel`, `ts`) linking the handoff's card, once it is posted.

    `note` says what happened to the message: "created" (a new handoff) or "duplicate" (already tracked).
    """
    return Effect(SOURCE_REPLY, channel, {"thread_ts": ts, "note": note})


def message_reply(channel: str, thread_ts: str, text: str) -> Effect:
    """A reply in the thread of any message; `text` is mrkdwn that the caller has made safe."""
    return Effect(MESSAGE_REPLY, channel, {"thread_ts": thread_ts, "text": text})


def reaction(channel: str, ts: str, name: str) -> Effect:
    """An emoji reaction (e.g. "white_check_mark") on the message (`channel`, `ts`)."""
    return Effect(REACTION, channel, {"ts": ts, "name": name})


# The App Home and messages to one person.
PUBLISH_HOME = "slack.publish_home"
DIRECT_MESSAGE = "slack.direct_message"


def publish_home(user: str) -> Effect:
    """Publish `user`'s App Home; the board is read when it is sent, so repeats collapse into one."""
    return Effect(PUBLISH_HOME, user)


def direct_message(user: str, text: str) -> Effect:
    """A message to `user` in the app's DM (e.g. a refusal for a click on the home tab, which has no channel)."""
    return Effect(DIRECT_MESSAGE, user, {"text": text})


# A message rendered when it is sent (nudges, escalations, digests): `payload` says what to render.
NUDGE = "slack.nudge"
ESCALATION = "slack.escalation"
POST_MESSAGE = "slack.message"


def post_message(target: str, text: str, blocks: list[dict[str, Any]] | None = None) -> Effect:
    """A new message in channel `target` (or in the app's DM when `target` is a user id); `text` and `blocks`
    are mrkdwn/Block Kit that the caller has made safe."""
    return Effect(POST_MESSAGE, target, {"text": text, **({"blocks": blocks} if blocks else {})})
