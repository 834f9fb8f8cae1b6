"""The SLA sweep's messages: a nudge (what is late, by how much, the next action, one-click answers) and
an escalation. Rendered when sent, so "late by" is true at the moment it arrives."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, MarkdownTextObject, SectionBlock

from bot import ids
from bot.blocks.card import URGENCY_EMOJI, owner_text
from bot.text import mention, mrkdwn, mrkdwn_cut
from handoffs.durations import humanize
from handoffs.lifecycle import ALLOWED_FROM, Action
from handoffs.model import Handoff
from handoffs.nudges import Lateness

_USERGROUP = re.compile(r"^S[A-Z0-9]{2,20}$")

WHY = {
    Lateness.unclaimed: "nobody has claimed it",
    Lateness.awaiting_approval: "it is still waiting for approval",
    Lateness.overdue: "it is past its due time",
}


def _late_line(handoff: Handoff, now: datetime) -> str:
    deadline = handoff.stall_deadline()
    late = humanize(now - deadline) if deadline and deadline < now else "now"
    return f"*{late} late*"


def _why(reason: str | None) -> str:
    try:
        return WHY[Lateness(reason or "")]
    except ValueError:
        return "it is late"


def _open_card(permalink: str | None) -> list[ButtonElement]:
    if not permalink:
        return []
    return [ButtonElement(text="Open card", action_id=ids.OPEN_CARD, url=permalink, value="open")]


def nudge_blocks(handoff: Handoff, payload: dict[str, Any], now: datetime, permalink: str | None) -> dict[str, Any]:
    """chat.postMessage arguments for one nudge; `payload` is the outbox row's (reason, number, of)."""
    title, next_action = mrkdwn_cut(handoff.title, 150), mrkdwn_cut(handoff.next_action, 300)
    number, of = int(payload.get("number") or 1), int(payload.get("of") or 1)
    who = _queue_ping(handoff) if payload.get("in_thread") else ""
    headline = (
        f"⏰ {who}{URGENCY_EMOJI[handoff.urgency]} *{handoff.ref}* {title} is {_late_line(handoff, now)}: "
        f"{_why(payload.get('reason'))}. (Reminder {number} of {of})"
    )
    value = str(handoff.id)
    # Only what can work in the handoff's status (SPEC §3): an approved one can be neither claimed (even with no
    # owner), snoozed nor released.
    first = [ButtonElement(text="Claim", action_id=ids.CLAIM, value=value, style="primary")] \
        if handoff.status in ALLOWED_FROM[Action.claim] else []
    snoozes = [
        ButtonElement(text="Snooze 1h", action_id=ids.NUDGE_SNOOZE_HOUR, value=value),
        ButtonElement(text="Snooze until tomorrow", action_id=ids.NUDGE_SNOOZE_TOMORROW, value=value),
    ] if handoff.status in ALLOWED_FROM[Action.snooze] else []
    wrong_owner = [ButtonElement(text="Wrong owner", action_id=ids.STALL_WRONG_OWNER, value=value)] \
        if handoff.status in ALLOWED_FROM[Action.release] else []
    buttons = [*first, *_open_card(permalink), *snoozes]
    reasons = [
        ButtonElement(text="Blocked", action_id=ids.STALL_BLOCKED, value=value),
        ButtonElement(text="Need info", action_id=ids.STALL_NEED_INFO, value=value),
        *wrong_owner,
    ]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=headline, verbatim=True)),
        SectionBlock(text=MarkdownTextObject(text=f"*Next:* {next_action}\n{owner_text(handoff)}", verbatim=True)),
        *([ActionsBlock(block_id=ids.NUDGE_ACTIONS_BLOCK, elements=buttons)] if buttons else []),
        ActionsBlock(block_id=ids.STALL_REASONS_BLOCK, elements=reasons),
    ]
    text = f"⏰ {handoff.ref} {title} is {_late_line(handoff, now)}"
    return {"text": text, "blocks": [block.to_dict() for block in blocks]}


def escalation_blocks(
    handoff: Handoff, payload: dict[str, Any], now: datetime, permalink: str | None
) -> dict[str, Any]:
    """chat.postMessage arguments for an escalation to a channel or a person."""
    title, next_action = mrkdwn_cut(handoff.title, 150), mrkdwn_cut(handoff.next_action, 300)
    nudges = int(payload.get("nudges") or 0)
    after = f" after {nudges} reminder{'s' if nudges != 1 else ''}" if nudges else ""
    headline = (
        f"📣 Escalated: {URGENCY_EMOJI[handoff.urgency]} *{handoff.ref}* {title} is {_late_line(handoff, now)}"
        f"{after}: {_why(payload.get('reason'))}."
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=headline, verbatim=True)),
        SectionBlock(text=MarkdownTextObject(
            text=f"*Next:* {next_action}\n{owner_text(handoff)} · see `/handoff stalled`", verbatim=True)),
    ]
    if permalink:
        blocks.append(ActionsBlock(block_id=ids.NUDGE_ACTIONS_BLOCK, elements=_open_card(permalink)))
    return {"text": f"📣 Escalated: {handoff.ref} {title}", "blocks": [block.to_dict() for block in blocks]}


def _queue_ping(handoff: Handoff) -> str:
    """A queue that is a user group is pinged: reaching its members is what a queue nudge is for."""
    queue = handoff.queue or ""
    return f"<!subteam^{queue}> " if _USERGROUP.match(queue) else ""


def stall_reason_reply(reason: str, actor: str) -> str:
    return f"🚧 {mention(actor)} says: *{mrkdwn(reason, 40)}*"


def wrong_owner_text(handoff: Handoff, user: str) -> str:
    where = "it is back in the queue" if not handoff.owner else f"it is still with {mention(handoff.owner)}"
    return (f"↩️ {mention(user)} says *{handoff.ref}* {mrkdwn_cut(handoff.title, 150)} is not theirs to do: {where}. "
            f"Please assign it to the right person.")
