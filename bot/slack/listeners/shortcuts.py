"""Shortcuts: "New handoff" (global) and "Create handoff" (on a message) open the New handoff modal.

A trigger lives 3 seconds and works once, so each shortcut acks at once and opens the modal from a lazy
listener right after, with nothing between them but building the view (no database, no other API call:
the message's permalink is built from the payload). The submission is handled in `views`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import ids
from bot.blocks.modals import INPUT_LIMIT
from bot.blocks.new_modal import TITLE_MAX, new_handoff_modal
from bot.runtime import Runtime
from bot.slack.payloads import parse_message_shortcut
from bot.text import truncate
from handoffs.config import HandoffConfig
from handoffs.effects import direct_message, private_notice

log = logging.getLogger("handoff_bot.slack.shortcuts")

TOO_SLOW = "Slack did not open the form in time; please use the shortcut again."

# Slack's markup in a message's `text`, turned into what a person reads (for a plain-text input).
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def _readable(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("@"):
        return f"@{label}" if label else target
    if target.startswith("#"):
        return f"#{label}" if label else target
    if target.startswith("!"):
        special = target[1:].split("^")[0]
        return label or (f"@{special}" if special in ("here", "channel", "everyone") else special)
    return f"{label} ({target})" if label and label != target else target


def message_plain_text(text: str) -> str:
    """A Slack message's text as a person reads it: links, mentions and entities unwrapped."""
    unwrapped = _MARKUP.sub(_readable, text)
    return unwrapped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def prefill_from_message(text: str) -> tuple[str | None, str | None]:
    """(title, summary) for a message: its first line, and the whole text, each cut to its input's limit."""
    readable = message_plain_text(text)
    first_line = next((line.strip() for line in readable.splitlines() if line.strip()), "")
    title = truncate(first_line, TITLE_MAX) if first_line else None
    summary = truncate(readable, INPUT_LIMIT) if readable else None
    return title, summary


def open_new_handoff_modal(client: WebClient, trigger_id: str, config: HandoffConfig, title: str | None = None) -> bool:
    """Open the New handoff modal with `trigger_id` (e.g. from `/handoff new [title]`); False when Slack refused."""
    return _open(client, trigger_id, new_handoff_modal(config, title=title))


def _open(client: WebClient, trigger_id: str, view: dict[str, Any]) -> bool:
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except (SlackApiError, SlackClientError, OSError) as error:
        log.warning("could not open the New handoff modal: %s", error)
        return False
    return True


def tell_the_form_did_not_open(runtime: Runtime, user: str, channel: str | None, text: str = TOO_SLOW) -> None:
    """A person who asked for a form that Slack would not open is told so (privately where they asked, else by
    DM: a global shortcut has no channel), rather than left waiting for it."""
    notice = private_notice(channel, user, text) if channel else direct_message(user, text)
    runtime.repo.enqueue([notice])
    runtime.notify()


def _ack(ack: Ack) -> None:
    ack()


def register(app: App, runtime: Runtime) -> None:
    def open_blank_modal(body: dict[str, Any], client: WebClient) -> None:
        trigger_id, user = body.get("trigger_id"), (body.get("user") or {}).get("id")
        if trigger_id and not open_new_handoff_modal(client, trigger_id, runtime.config) and user:
            tell_the_form_did_not_open(runtime, user, None)

    def open_modal_from_message(body: dict[str, Any], client: WebClient) -> None:
        shortcut = parse_message_shortcut(body)
        if not shortcut.trigger_id:
            return
        title, summary = prefill_from_message(shortcut.text)
        view = new_handoff_modal(
            runtime.config, title=title, summary=summary, source_url=shortcut.permalink,
            source_channel=shortcut.channel_id, source_ts=shortcut.reply_thread,
        )
        if not _open(client, shortcut.trigger_id, view) and shortcut.user_id:
            tell_the_form_did_not_open(runtime, shortcut.user_id, shortcut.channel_id)

    app.global_shortcut(ids.GLOBAL_SHORTCUT)(ack=_ack, lazy=[open_blank_modal])
    app.message_shortcut(ids.MESSAGE_SHORTCUT)(ack=_ack, lazy=[open_modal_from_message])
