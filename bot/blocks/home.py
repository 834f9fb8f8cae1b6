"""The App Home (SPEC §6 "App Home"): the viewer's own board, a pure function of a `Board`.

The figures come first, then one list per section: assigned to me, awaiting my approval, unclaimed
in my queues and, for managers, stalled. Each line is a compact card summary with the card's own
buttons (same action ids, value = the handoff id), so the card listeners handle a click from here
too; only the buttons the viewer may use are shown. The view stays within Slack's 100 blocks: a
list that does not fit ends with "…and N more". Producer text goes through `bot.text` like on the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot import ids
from bot.blocks.card import URGENCY_EMOJI
from bot.text import channel_link, is_channel_id, mention, mrkdwn, mrkdwn_cut, slack_date, truncate
from handoffs.config import HandoffConfig
from handoffs.durations import humanize
from handoffs.lifecycle import Action, Actor, Refused, check_allowed
from handoffs.model import Handoff, Status
from storage.board_queries import COUNT_CAP, Board, BoardList

HOME_BLOCK_LIMIT = 100  # Slack's limit for a home tab view
TITLE_LIMIT = 200
LINE_LIMIT = 3000


@dataclass(frozen=True)
class _Section:
    heading: str
    rows: BoardList
    empty: str
    more_hint: str = ""
    show_owner: bool = True


# ---------------------------------------------------------------- small helpers


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _count(value: int) -> str:
    return f"{COUNT_CAP}+" if value > COUNT_CAP else str(value)


def _aware_past(moment: datetime, now: datetime) -> bool:
    return moment.timestamp() <= now.timestamp()


def _pending_review(handoff: Handoff) -> bool:
    return handoff.awaiting_approval and handoff.approved_at is None


def _queue_text(queue: str | None) -> str:
    """A channel queue links to the channel; a user group is named, never pinged."""
    if not queue:
        return "no queue"
    return channel_link(queue) if is_channel_id(queue) else f"queue {mrkdwn(queue, 40)}"


def _who(handoff: Handoff) -> str:
    if handoff.owner:
        return mention(handoff.owner)
    return f"_unclaimed_ · {_queue_text(handoff.queue or handoff.channel)}"


def _deadline(handoff: Handoff, now: datetime) -> str:
    deadline = handoff.stall_deadline()
    if deadline is None:
        return ""
    if _aware_past(deadline, now):
        return f"⏰ *{humanize(now - deadline)} late*"
    label = "claim by" if handoff.status is Status.open else "approve by" if _pending_review(handoff) else "due"
    return f"{label} {slack_date(deadline)}"


def _line(handoff: Handoff, now: datetime, *, show_owner: bool) -> str:
    title = mrkdwn_cut(handoff.title, TITLE_LIMIT) or handoff.ref
    facts = [_who(handoff) if show_owner else channel_link(handoff.channel), handoff.status.value]
    if _pending_review(handoff):
        facts.append("⚠️ needs approval")
    if handoff.snoozed_until is not None and not _aware_past(handoff.snoozed_until, now):
        facts.append("💤 snoozed")
    deadline = _deadline(handoff, now)
    if deadline:
        facts.append(deadline)
    return truncate(f"{URGENCY_EMOJI[handoff.urgency]} *{handoff.ref}* · {title}\n" + " · ".join(facts), LINE_LIMIT)


def _allowed(handoff: Handoff, action: Action, viewer: Actor, config: HandoffConfig) -> bool:
    try:
        check_allowed(handoff, action, viewer, config)
    except Refused:
        return False
    return True


def _buttons(handoff: Handoff, viewer: Actor, config: HandoffConfig) -> list[ButtonElement]:
    """The card's main buttons that `viewer` may use now: claim; approve and reject while approval is
    pending; close otherwise. Edit and the overflow stay on the card."""
    wanted: list[tuple[str, str, Action]] = []
    if handoff.status is Status.open:
        wanted.append(("✋ Claim", ids.CLAIM, Action.claim))
    if _pending_review(handoff):
        wanted += [("✅ Approve", ids.APPROVE, Action.approve), ("⛔ Reject", ids.REJECT, Action.reject)]
    elif handoff.status in (Status.claimed, Status.approved):
        wanted.append(("🏁 Close", ids.CLOSE, Action.close))
    shown = [(text, action_id) for text, action_id, action in wanted if _allowed(handoff, action, viewer, config)]
    return [
        ButtonElement(
            text=PlainTextObject(text=text, emoji=True), action_id=action_id, value=str(handoff.id),
            style="danger" if action_id == ids.REJECT else "primary" if index == 0 else None,
        )
        for index, (text, action_id) in enumerate(shown)
    ]


def _item(handoff: Handoff, viewer: Actor, config: HandoffConfig, now: datetime, *, show_owner: bool) -> list[Block]:
    blocks: list[Block] = [SectionBlock(text=_md(_line(handoff, now, show_owner=show_owner)))]
    buttons = _buttons(handoff, viewer, config)
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return blocks


# ---------------------------------------------------------------- sections


def _figures(board: Board) -> list[Block]:
    figures = board.figures
    fields = [
        _md(f"*Open, assigned to you*\n{_count(figures.open_assigned)}"),
        _md(f"*Awaiting your approval*\n{_count(figures.awaiting_approval)}"),
        _md(f"*Yours, stalled*\n{_count(figures.stalled_mine)}"),
        _md(f"*Closed by you, last 7 days*\n{_count(figures.closed_last_7_days)}"),
    ]
    return [SectionBlock(fields=fields)]


def _sections(board: Board, is_manager: bool) -> list[_Section]:
    if board.queues:
        unclaimed_empty = "Nothing waits in your queues right now."
    else:
        unclaimed_empty = ("You are in no queue yet: a route in handoffs.yml lists you as an owner, approver "
                           "or claimer, or uses one of your user groups as its queue.")
    sections = [
        _Section("📥 *Assigned to you*", board.assigned, "Nothing assigned to you. 🎉",
                 "`/handoff mine` lists them all.", show_owner=False),
        _Section("✅ *Awaiting your approval*", board.awaiting, "Nothing waits for your approval."),
        _Section("🙋 *Unclaimed in your queues*", board.unclaimed, unclaimed_empty),
    ]
    if is_manager and board.stalled is not None:
        sections.append(_Section("⏰ *Stalled*", board.stalled, "Nothing is stalled. 👏",
                                 "`/handoff stalled` lists them all."))
    return sections


def _more(section: _Section, shown: int) -> Block:
    rows = section.rows
    hidden = max(0, rows.total - shown)
    text = f"_…and {hidden}{'+' if rows.capped else ''} more_"
    if section.more_hint:
        text += f" · {section.more_hint}"
    return ContextBlock(elements=[_md(text)])


def _section_blocks(section: _Section, budget: int, viewer: Actor, config: HandoffConfig,
                    now: datetime) -> list[Block]:
    """Heading, lines and, when cut, "…and N more": never more than `budget` blocks (at least 3)."""
    rows = section.rows
    total = f" ({_count(rows.total)})" if rows.total else ""
    blocks: list[Block] = [DividerBlock(), SectionBlock(text=_md(f"{section.heading}{total}"))]
    if not rows.items:
        return [*blocks, ContextBlock(elements=[_md(section.empty)])]
    room = budget - len(blocks) - 1  # keep one block for "…and N more"
    shown = 0
    for handoff in rows.items:
        item = _item(handoff, viewer, config, now, show_owner=section.show_owner)
        if len(item) > room:
            break
        blocks += item
        room -= len(item)
        shown += 1
    if shown < rows.total:
        blocks.append(_more(section, shown))
    return blocks


# ---------------------------------------------------------------- public


def home_view(board: Board, config: HandoffConfig, *, now: datetime, is_manager: bool) -> dict[str, Any]:
    """The `home` view for `views.publish`; `to_dict()` checks the 100-block limit and every text limit."""
    viewer = Actor(board.user)
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="Your handoffs", emoji=True)),
        *_figures(board),
        ContextBlock(elements=[_md(f"Updated {slack_date(now)} · it refreshes when you open this tab "
                                   "and after you act here")]),
    ]
    sections = _sections(board, is_manager)
    budget = HOME_BLOCK_LIMIT - len(blocks)
    for index, section in enumerate(sections):
        share = budget // (len(sections) - index)  # what an earlier list leaves unused goes to the later ones
        part = _section_blocks(section, share, viewer, config, now)
        blocks += part
        budget -= len(part)
    return View(type="home", blocks=blocks).to_dict()
