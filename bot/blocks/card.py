"""The handoff card (SPEC §6 "Card") and the short replies written in its thread.

Everything a producer wrote goes through `bot.text` before it reaches a block;
only validated ids become mentions and only the validated source URL a link.
Every text is cut to its Block Kit limit with a visible "…" (the database keeps it whole).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InteractiveElement,
    MarkdownTextObject,
    Option,
    OverflowMenuElement,
    PlainTextObject,
    SectionBlock,
    UserSelectElement,
)

from bot import ids
from bot.text import (
    channel_link,
    is_channel_id,
    is_user_id,
    mention,
    mrkdwn,
    mrkdwn_safe,
    plain,
    safe_link,
    slack_date,
    truncate,
)
from handoffs.config import HandoffConfig
from handoffs.lifecycle import closing_outcomes
from handoffs.model import Handoff, Status, Urgency

SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
CONTEXT_LIMIT = 300  # our own cap per context element: a context line stays a line
ITEM_LIMIT = 300  # one bullet of a list
NOTE_LIMIT = 1500
FALLBACK_LIMIT = 300
# Slack refuses a message whose blocks hold more than ~12,000 characters of text in all (msg_blocks_too_long,
# observed: slackapi/bolt-js#2509, #2867), whatever each block holds on its own; this leaves a margin.
CARD_TEXT_BUDGET = 11_000
MIN_PART = 200  # the least a cut part keeps: its heading and a line or two

# A card section whose text can be cut to fit `limit` characters (None when it has nothing to show).
Part = Callable[[int], Block | None]

URGENCY_EMOJI = {Urgency.urgent: "🔴", Urgency.high: "🟠", Urgency.normal: "🔵", Urgency.low: "⚪"}
URGENCY_TEXT = {Urgency.urgent: "*URGENT*", Urgency.high: "*High*", Urgency.normal: "Normal", Urgency.low: "Low"}
STATUS_TEXT = {
    Status.open: "🟢 Open — waiting for an owner",
    Status.claimed: "✋ Claimed",
    Status.approved: "✅ Approved",
    Status.rejected: "⛔ Rejected",
    Status.closed: "🏁 Closed",
}


# ---------------------------------------------------------------- small helpers


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=_md(truncate(text, SECTION_LIMIT)))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_past(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and _aware(moment) <= _aware(now)


def _pending_review(handoff: Handoff) -> bool:
    return handoff.awaiting_approval and handoff.approved_at is None


def _kind_label(handoff: Handoff, config: HandoffConfig) -> str:
    kind = config.kind(handoff.kind)
    return mrkdwn((kind.label if kind and kind.label else None) or handoff.kind, 80)


def _queue_text(queue: str | None) -> str:
    """A channel queue links to the channel; a user group is named, never pinged."""
    if not queue:
        return "no queue"
    if is_channel_id(queue):
        return channel_link(queue)
    return f"queue {mrkdwn(queue, 40)}"


def _bullets(heading: str, lines: Sequence[str], limit: int = SECTION_LIMIT) -> str:
    """`heading` then one "• line" per entry, stopping with "…and N more" before `limit`."""
    text = heading
    reserve = len("\n_…and 99 more_")
    for index, line in enumerate(lines):
        entry = f"\n• {line}"
        if len(text) + len(entry) > limit - reserve:
            return f"{text}\n_…and {len(lines) - index} more_"
        text += entry
    return text


# ---------------------------------------------------------------- card sections


def _kind_line(handoff: Handoff, config: HandoffConfig) -> Block:
    parts = [f"{URGENCY_EMOJI[handoff.urgency]} {URGENCY_TEXT[handoff.urgency]}", _kind_label(handoff, config)]
    if _pending_review(handoff):
        parts.append("⚠️ *Needs approval*")
    return ContextBlock(elements=[_md(" · ".join(parts))])


def _title(handoff: Handoff) -> Block:
    text = plain(handoff.title, HEADER_LIMIT) or handoff.ref
    return HeaderBlock(text=PlainTextObject(text=text, emoji=True))


def _context_parts(handoff: Handoff, now: datetime) -> list[str]:
    parts = [f"*{handoff.ref}*"]
    # a producer's text that is nothing but bidi controls cleans to "": its part is left out
    link = safe_link(handoff.source_url, handoff.source_label or handoff.source_system)
    if link:
        parts.append(f"🔗 {link}")
    created_by, intent = mrkdwn(handoff.created_by, 120), mrkdwn(handoff.intent, 120)
    if created_by:
        parts.append(f"by {created_by}")
    if intent:
        parts.append(f"intent: {intent}")
    if handoff.confidence is not None:
        parts.append(f"confidence {round(handoff.confidence * 100)}%")
    if handoff.due_at is not None:
        overdue = " ⏰ *overdue*" if _is_past(handoff.due_at, now) and not handoff.is_terminal else ""
        parts.append(f"due {slack_date(handoff.due_at)}{overdue}")
    if handoff.seen_count > 1:
        parts.append(f"seen again ×{handoff.seen_count - 1}")
    if handoff.snoozed_until is not None and not _is_past(handoff.snoozed_until, now):
        parts.append(f"💤 snoozed until {slack_date(handoff.snoozed_until)}")
    if handoff.escalated_at is not None and not handoff.is_terminal:
        parts.append("📣 escalated")
    return parts


def _context_line(handoff: Handoff, now: datetime) -> Block:
    # One element per part (at most 9 of the 10 allowed), each bounded well under the text limit.
    return ContextBlock(elements=[_md(part) for part in _context_parts(handoff, now)])


def _item_limit(limit: int) -> int:
    """How much of one list item a part of `limit` characters shows: a cut list still shows a few."""
    return min(ITEM_LIMIT, limit // 3)


def _summary(handoff: Handoff, limit: int) -> Block | None:
    summary = mrkdwn(handoff.summary, limit)
    return _section(summary) if summary.strip() else None  # Slack refuses a section without text


def _facts(handoff: Handoff, limit: int) -> Block | None:
    if not handoff.facts:
        return None
    item = _item_limit(limit)
    lines = [f"*{mrkdwn(key, 100)}:* {mrkdwn(value, item)}" for key, value in handoff.facts.items()]
    return _section(_bullets("*Key facts*", lines, limit))


def _field(label: str, value: str) -> MarkdownTextObject:
    heading = f"*{label}*\n"
    return _md(heading + truncate(value, FIELD_LIMIT - len(heading)))


def owner_text(handoff: Handoff) -> str:
    if handoff.owner:
        return mention(handoff.owner)
    if handoff.is_terminal:
        return "nobody"
    return f"_unclaimed_ · {_queue_text(handoff.queue or handoff.channel)}"


def _status_text(handoff: Handoff) -> str:
    text = STATUS_TEXT[handoff.status]
    if handoff.status is Status.closed and handoff.outcome:
        text += f" as *{mrkdwn(handoff.outcome, 80)}*"
    return text


def _deadline_fields(handoff: Handoff, now: datetime) -> list[MarkdownTextObject]:
    fields = []
    if handoff.status is Status.open and handoff.claim_by is not None:
        late = " ⏰" if _is_past(handoff.claim_by, now) else ""
        fields.append(_field("Claim by", slack_date(handoff.claim_by) + late))
    if handoff.due_at is not None:
        late = " ⏰" if _is_past(handoff.due_at, now) and not handoff.is_terminal else ""
        fields.append(_field("Due", slack_date(handoff.due_at) + late))
    return fields


def _fields(handoff: Handoff, now: datetime) -> Block:
    fields = [
        _field("Owner", owner_text(handoff)),
        _field("Status", _status_text(handoff)),
        _field("Next action", mrkdwn_safe(handoff.next_action)),
        *_deadline_fields(handoff, now),
    ]
    done_when = mrkdwn_safe(handoff.definition_of_done)
    if done_when.strip():
        fields.append(_field("Done when", done_when))
    if handoff.approvers:
        fields.append(_field("Approvers", ", ".join(mention(user) for user in handoff.approvers[:20])))
    return SectionBlock(fields=fields[:10])


def _review_banner(handoff: Handoff) -> Block | None:
    if not _pending_review(handoff):
        return None
    reasons = mrkdwn("; ".join(handoff.review_reasons), 2000) if handoff.review_reasons else "review before it goes out"
    return _section(f"⚠️ *Needs approval*: {reasons}")


def _list_block(heading: str, items: list[str], limit: int) -> Block | None:
    if not items:
        return None
    item = _item_limit(limit)
    return _section(_bullets(heading, [mrkdwn(text, item) for text in items], limit))


def _lists(handoff: Handoff) -> list[Part]:
    return [
        partial(_list_block, "❓ *Missing info*", handoff.missing_info),
        partial(_list_block, "🚩 *Risks*", handoff.risk_flags),
        partial(_list_block, "✔️ *Already done*", handoff.already_done),
        partial(_list_block, "🔒 *Constraints*", handoff.constraints),
        partial(_list_block, "📌 *Decided*", handoff.decisions),
    ]


def _draft(handoff: Handoff, limit: int) -> Block | None:
    draft = mrkdwn_safe(handoff.draft)
    if not draft.strip():
        return None
    heading = "📝 *Draft*\n"
    quoted = "\n".join(f">{line}" for line in draft.split("\n"))
    return _section(heading + truncate(quoted, limit - len(heading)))


def _outcome(handoff: Handoff) -> Block | None:
    if not handoff.is_terminal:
        return None
    when = handoff.closed_at or handoff.decided_at
    if handoff.status is Status.rejected:
        line, label = "⛔ *Rejected*", "Reason"
    else:
        line, label = f"🏁 *Closed* as *{mrkdwn(handoff.outcome or 'done', 80)}*", "Note"
    if handoff.owner:
        line += f" · owner {mention(handoff.owner)}"
    if when is not None:
        line += f" · {slack_date(when)}"
    note = mrkdwn(handoff.outcome_note, NOTE_LIMIT)
    if note.strip():
        line += f"\n*{label}:* {note}"
    return _section(line)


# ---------------------------------------------------------------- actions


def _button(text: str, action_id: str, handoff: Handoff, style: str | None = None) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=text, emoji=True), action_id=action_id, value=str(handoff.id), style=style
    )


def _may_approve(handoff: Handoff) -> bool:
    if handoff.approved_at is not None:
        return False
    if handoff.status is Status.open:
        return _pending_review(handoff)
    return handoff.status is Status.claimed and (handoff.requires_approval or bool(handoff.approvers))


def _buttons(handoff: Handoff, config: HandoffConfig) -> list[ButtonElement]:
    """The buttons SPEC §3 allows in the current status; the first one is the primary."""
    wanted: list[tuple[str, str]] = []
    if handoff.status is Status.open:
        wanted.append(("✋ Claim", ids.CLAIM))
    if _may_approve(handoff):
        wanted.append(("✅ Approve", ids.APPROVE))
    if handoff.status in (Status.open, Status.claimed):
        wanted.append(("✏️ Edit", ids.EDIT))
    if handoff.status is Status.claimed or (handoff.status is Status.open and _pending_review(handoff)):
        wanted.append(("⛔ Reject", ids.REJECT))
    if handoff.status in (Status.claimed, Status.approved) and closing_outcomes(handoff, config):
        wanted.append(("🏁 Close", ids.CLOSE))
    buttons = []
    for index, (text, action_id) in enumerate(wanted):
        style = "danger" if action_id == ids.REJECT else "primary" if index == 0 else None
        buttons.append(_button(text, action_id, handoff, style))
    return buttons


def _overflow(handoff: Handoff) -> OverflowMenuElement | None:
    choices = []
    if handoff.status is Status.claimed:
        choices.append(("↩️ Release", ids.MORE_RELEASE))
    if handoff.status in (Status.open, Status.claimed):
        choices += [("💤 Snooze 1 hour", ids.MORE_SNOOZE_HOUR), ("🌙 Snooze until tomorrow", ids.MORE_SNOOZE_TOMORROW)]
    if not choices:
        return None
    options = [
        Option(value=f"{verb}:{handoff.id}", text=PlainTextObject(text=text, emoji=True)) for text, verb in choices
    ]
    return OverflowMenuElement(action_id=ids.MORE, options=options)


def _actions(handoff: Handoff, config: HandoffConfig) -> Block | None:
    if handoff.is_terminal:
        return None
    elements: list[InteractiveElement] = [*_buttons(handoff, config)]
    overflow = _overflow(handoff)
    if overflow is not None:
        elements.append(overflow)
    elements.append(UserSelectElement(action_id=ids.REASSIGN, placeholder=PlainTextObject(text="Reassign…")))
    # The picker's choice carries no value: the block id tells which handoff (also on a private copy of the
    # card, from `/handoff show`, whose message is not the card the database knows)
    return ActionsBlock(block_id=f"{ids.CARD_ACTIONS_BLOCK}:{handoff.id}", elements=elements)


# ---------------------------------------------------------------- public


def _text_length(node: Any) -> int:
    """The characters of text in a block's `to_dict()`: what counts against the message's total."""
    if isinstance(node, dict):
        return sum(len(v) if k == "text" and isinstance(v, str) else _text_length(v) for k, v in node.items())
    if isinstance(node, list):
        return sum(_text_length(item) for item in node)
    return 0


def _water_level(sizes: list[int], room: int) -> int:
    """The largest size such that `sizes`, each cut to it, add up to at most `room`: the biggest are cut first."""
    left = len(sizes)
    for size in sorted(sizes):
        if size * left > room:  # every part left is at least this big: they share what remains equally
            return room // left
        room -= size
        left -= 1
    return max(sizes, default=0)


def _dumped(block: Block | None) -> dict[str, Any] | None:
    return block.to_dict() if block is not None else None


def _fit(parts: list[Part], room: int) -> list[dict[str, Any] | None]:
    """Each part whole when all fit in `room` characters of text; else the biggest cut down to a common size."""
    whole = [_dumped(part(SECTION_LIMIT)) for part in parts]
    sizes = [_text_length(block) for block in whole]
    cap = max(MIN_PART, _water_level(sizes, room))
    return [block if size <= cap else _dumped(part(cap)) for part, block, size in zip(parts, whole, sizes, strict=True)]


def card_blocks(
    handoff: Handoff, config: HandoffConfig, *, now: datetime, text_budget: int = CARD_TEXT_BUDGET
) -> list[dict[str, Any]]:
    """The card's blocks in SPEC order; `to_dict()` checks every Block Kit limit.

    All blocks together hold at most about `text_budget` characters of text: the summary, facts, lists and
    draft share what the rest leaves, the biggest cut first with "…" (the database keeps them whole). A caller
    that adds blocks (`/handoff show`) passes a smaller budget.
    """
    head = [_dumped(_kind_line(handoff, config)), _dumped(_title(handoff)), _dumped(_context_line(handoff, now))]
    middle = [_dumped(_fields(handoff, now)), _dumped(_review_banner(handoff))]
    tail = [_dumped(_outcome(handoff)), _dumped(_actions(handoff, config))]
    room = text_budget - _text_length([*head, *middle, *tail])
    summary, facts, *lists, draft = _fit(
        [partial(_summary, handoff), partial(_facts, handoff), *_lists(handoff), partial(_draft, handoff)], room)
    # At most 17 blocks: far from the 50 a message may hold.
    ordered = [*head, summary, facts, *middle, *lists, draft, *tail]
    return [block for block in ordered if block is not None]


def card_text(handoff: Handoff) -> str:
    """The message's `text`: the notification and screen-reader fallback. Never a mention."""
    marks = URGENCY_EMOJI[handoff.urgency] + " " if handoff.urgency in (Urgency.urgent, Urgency.high) else ""
    if _pending_review(handoff):
        marks += "⚠️ "
    return truncate(f"{marks}{handoff.ref} · {mrkdwn_safe(handoff.title)}", FALLBACK_LIMIT)


def card_message(handoff: Handoff, config: HandoffConfig, *, now: datetime) -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage / chat.update (post it with unfurl_links/media off)."""
    return {"text": card_text(handoff), "blocks": card_blocks(handoff, config, now=now)}


# ---------------------------------------------------------------- thread replies

Reply = Callable[[str, dict[str, Any], Handoff], str]


def _target(value: Any) -> str:
    text = str(value) if value is not None else ""
    if is_user_id(text):
        return mention(text)
    if is_channel_id(text):
        return channel_link(text)
    return mrkdwn(text, 80) or "nobody"


def _note(value: Any) -> str:
    return f": {mrkdwn(str(value), NOTE_LIMIT)}" if value else ""


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return slack_date(value)
    try:
        return slack_date(datetime.fromisoformat(str(value)))
    except ValueError:
        return mrkdwn(str(value), 60) if value else "later"


def _edited(who: str, data: dict[str, Any], handoff: Handoff) -> str:
    names = [mrkdwn(str(name).replace("_", " "), 40) for name in (data.get("changes") or {})]
    return f"✏️ Edited by {who}" + (f": {', '.join(names)}" if names else "")


def _approved(who: str, data: dict[str, Any], handoff: Handoff) -> str:
    closed = " and closed" if data.get("outcome") else ""
    return f"✅ Approved{closed} by {who}{_note(data.get('note'))}"


def _closed(who: str, data: dict[str, Any], handoff: Handoff) -> str:
    outcome = mrkdwn(str(data.get("outcome") or handoff.outcome or "done"), 80)
    return f"🏁 Closed by {who} as *{outcome}*{_note(data.get('note'))}"


def _reassigned(who: str, data: dict[str, Any], handoff: Handoff) -> str:
    if data.get("from"):
        return f"🔀 Reassigned from {_target(data['from'])} to {_target(data.get('to'))} by {who}"
    return f"🔀 Assigned to {_target(data.get('to'))} by {who}"


def _escalated(who: str, data: dict[str, Any], handoff: Handoff) -> str:
    to = data.get("to")
    targets: list[Any] = to if isinstance(to, list) else [to]
    named = ", ".join(_target(target) for target in targets if target)
    return "📣 Escalated" + (f" to {named}" if named else "")


_REPLIES: dict[str, Reply] = {
    "created": lambda who, data, h: f"🆕 {h.ref} created by {who}",
    "claimed": lambda who, data, h: f"✋ Claimed by {who}",
    "released": lambda who, data, h: f"↩️ Released by {who}",
    "reassigned": _reassigned,
    "approved": _approved,
    "edited": _edited,
    "rejected": lambda who, data, h: f"⛔ Rejected by {who}{_note(data.get('reason'))}",
    "closed": _closed,
    "reopened": lambda who, data, h: f"🔁 Reopened by {who}{_note(data.get('reason'))}",
    "snoozed": lambda who, data, h: f"💤 Snoozed by {who} until {_when(data.get('until'))}",
    "nudged": lambda who, data, h: "⏰ Reminder sent" + (f" to {_target(data['to'])}" if data.get("to") else ""),
    "escalated": _escalated,
}


def thread_reply_text(
    event: str, actor: str, data: dict[str, Any], handoff: Handoff, *, actor_is_system: bool = False
) -> str:
    """The short line written in the card's thread for one event (`claimed`, `closed`, …)."""
    who = mrkdwn(actor, 80) if actor_is_system or not is_user_id(actor) else mention(actor)
    reply = _REPLIES.get(event)
    if reply is None:
        return f"{mrkdwn(event, 40)} by {who}"
    return reply(who, data or {}, handoff)
