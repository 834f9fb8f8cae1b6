"""Thread replies on the Slack messages handoffs come from (the message shortcut and intake channels).

Everything taken from a message or a producer goes through `mrkdwn_safe`; only a permalink that Slack
gave us, checked, becomes a link.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.text import is_user_id, mention, mrkdwn, truncate
from handoffs.model import Handoff

REPLY_LIMIT = 3500
NOTE_LIMIT = 2000
MAX_PROBLEMS = 20
_PERMALINK = re.compile(r"^https://[A-Za-z0-9.-]+/[^\s<>|]*$")

HOW_TO = ("Post the handoff as Slack message metadata of event type `handoff`, or as a JSON code block "
          "(```json … ```).")


def card_link(permalink: str | None) -> str:
    return f"<{permalink.replace('&', '&amp;')}|open the card>" if permalink and _PERMALINK.match(permalink) else ""


def source_reply_text(handoff: Handoff, permalink: str | None, *, note: str = "created") -> str:
    """"📌 Handoff H-42 created: <permalink|open the card>" (or "already tracked" for a repeat)."""
    link = card_link(permalink)
    if note == "duplicate":
        head = f"📌 This is already tracked as {handoff.ref}"
    else:
        head = f"📌 Handoff {handoff.ref} created"
    if link:
        return f"{head}: {link}"
    return f"{head}." if handoff.card_ts else f"{head}; its card could not be posted yet."


def outcome_reply_text(ref: str, event: str, actor: str, data: Mapping[str, Any], *, actor_is_system: bool) -> str:
    """How a handoff made from this message ended and who decided, e.g.
    "🏁 Handoff H-42 was closed as *done* by @anna: Jane signed".

    A Slack user is mentioned; an API client is named by its token name, as text. The note is the closer's
    own words, so it is shown inert.
    """
    who = mention(actor) if is_user_id(actor) and not actor_is_system else mrkdwn(actor, 80)
    if event == "rejected":
        head, note = f"⛔ Handoff {ref} was rejected by {who}", data.get("reason")
    elif event == "approved":
        head, note = f"✅ Handoff {ref} was approved and closed by {who}", data.get("note")
    else:
        outcome = mrkdwn(str(data.get("outcome") or "done"), 80)
        head, note = f"🏁 Handoff {ref} was closed as *{outcome}* by {who}", data.get("note")
    text = f"{head}: {mrkdwn(str(note), NOTE_LIMIT)}" if note else f"{head}."
    return truncate(text, REPLY_LIMIT)


def problems_text(problems: Sequence[tuple[str, str]]) -> str:
    """One reply listing every problem of an invalid handoff, as `field path: message`."""
    lines = [f"• `{mrkdwn(path, 200) or 'message'}`: {mrkdwn(message, 500)}"
             for path, message in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"… and {len(problems) - MAX_PROBLEMS} more")
    text = "⚠️ This message was not turned into a handoff:\n" + "\n".join(lines)
    return truncate(text, REPLY_LIMIT)


def untrusted_text(sender: str | None) -> str:
    who = f"its sender (`{mrkdwn(sender or 'unknown', 40)}`)"
    return (f"⚠️ This looks like a handoff, but {who} is not a trusted producer for this channel, so it was not "
            f"created. Ask an admin to add them to `intake_channels` in handoffs.yml.")


def no_handoff_text() -> str:
    return f"⚠️ No handoff found in this message. {HOW_TO}"
