"""Slack payloads parsed into typed values in one place; listeners never dig through raw dicts."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from bot.posted_messages import valid_ts
from bot.slack.message_content import message_content
from handoffs.model import USER_ID_PATTERN, parse_ref

_USER_ID = re.compile(USER_ID_PATTERN)


def acting_user(body: dict[str, Any]) -> str | None:
    """The person a request acts as: an interaction's `user.id`, a slash command's `user_id`; None when the body
    names nobody, or something that is not a Slack user id."""
    user = body.get("user")
    found = user.get("id") if isinstance(user, dict) else body.get("user_id")
    return found if isinstance(found, str) and _USER_ID.match(found) else None


class Click(BaseModel):
    """A button, overflow or user-picker press on a handoff card (or a board built from cards)."""

    handoff_id: int | None
    user_id: str
    channel_id: str | None = None
    message_ts: str | None = None
    trigger_id: str | None = None
    verb: str | None = None  # overflow option verb, e.g. "release"
    selected_user: str | None = None
    from_home: bool = False  # pressed on the App Home tab: no channel, and the home is republished after


def _handoff_id(value: str | None) -> int | None:
    return parse_ref(value) if value else None


def parse_click(body: dict[str, Any]) -> Click:
    action = (body.get("actions") or [{}])[0]
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    verb = None
    raw_value = action.get("value")
    option = (action.get("selected_option") or {}).get("value")
    if option:
        verb, _, raw_value = str(option).partition(":")
    selected_user = action.get("selected_user")
    if selected_user and not raw_value:
        raw_value = (action.get("block_id") or "").rpartition(":")[2] or None
    return Click(
        handoff_id=_handoff_id(raw_value),
        user_id=(body.get("user") or {}).get("id", ""),
        channel_id=channel,
        message_ts=container.get("message_ts") or (body.get("message") or {}).get("ts"),
        trigger_id=body.get("trigger_id"),
        verb=verb,
        selected_user=selected_user,
        from_home=(body.get("view") or {}).get("type") == "home",
    )


# ---------------------------------------------------------------- messages (shortcut, intake channels)

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CONVERSATION = re.compile(r"^[CGD][A-Z0-9]{2,20}$")


def message_permalink(
    domain: str | None, channel: str | None, ts: str | None, thread_ts: str | None = None
) -> str | None:
    """A message's permalink, built from the payload without an API call (None when a part is not valid).

    https://{domain}.slack.com/archives/{channel}/p{ts without the dot}, plus ?thread_ts=…&cid=… in a thread.
    """
    if not (domain and channel and ts) or not (_DOMAIN.match(domain) and _CONVERSATION.match(channel)
                                               and valid_ts(ts)):
        return None
    url = f"https://{domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts and valid_ts(thread_ts):
        url += f"?thread_ts={thread_ts}&cid={channel}"
    return url


class ShortcutMessage(BaseModel):
    """A message shortcut ("Create handoff") on a message."""

    user_id: str
    trigger_id: str | None
    channel_id: str | None
    ts: str | None
    thread_ts: str | None = None  # the parent's ts when the message is a reply in a thread
    text: str
    permalink: str | None

    @property
    def reply_thread(self) -> str | None:
        """Where replies about this message go: its thread, whose parent's ts Slack asks for (not a reply's)."""
        return self.thread_ts or self.ts


def parse_message_shortcut(body: dict[str, Any]) -> ShortcutMessage:
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id")
    ts = message.get("ts") or body.get("message_ts")
    domain = (body.get("team") or {}).get("domain")
    return ShortcutMessage(
        user_id=(body.get("user") or {}).get("id", ""),
        trigger_id=body.get("trigger_id"),
        channel_id=channel,
        ts=ts,
        thread_ts=valid_ts(message.get("thread_ts")),
        text=message_content(message),
        permalink=message_permalink(domain, channel, ts, message.get("thread_ts")),
    )


class ChannelMessage(BaseModel):
    """A `message` event, as far as intake channels need it."""

    event_id: str
    channel: str
    ts: str
    user: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    thread_ts: str | None = None
    text: str = ""
    metadata_type: str | None = None
    metadata_payload: Any = None
    own: bool = False  # posted by this app itself

    @property
    def sender(self) -> str | None:
        """Who posted it: the bot id for an app's message, else the user id."""
        return self.bot_id or self.user

    @property
    def is_thread_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


def parse_message_event(body: dict[str, Any]) -> ChannelMessage | None:
    """The message of an `event_callback` body; None when it names no channel and ts (edits, deletions)."""
    event = body.get("event") or {}
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    raw_metadata = event.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    bot_users = {
        auth.get("user_id") for auth in body.get("authorizations") or []
        if isinstance(auth, dict) and auth.get("is_bot")
    }
    app_id = event.get("app_id") or (event.get("bot_profile") or {}).get("app_id")
    user = event.get("user")
    own = bool(app_id and app_id == body.get("api_app_id")) or bool(user and user in bot_users)
    return ChannelMessage(
        event_id=str(body.get("event_id") or f"{channel}:{ts}"),
        channel=channel,
        ts=ts,
        user=event.get("user"),
        bot_id=event.get("bot_id"),
        subtype=event.get("subtype"),
        thread_ts=event.get("thread_ts"),
        text=str(event.get("text") or ""),
        metadata_type=metadata.get("event_type"),
        metadata_payload=metadata.get("event_payload"),
        own=own,
    )
