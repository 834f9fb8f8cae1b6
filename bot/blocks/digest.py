"""The daily digest for managers: the counts, then the escalated and the most overdue stalled handoffs.

Each line is the one `/handoff stalled` shows (ref linked to the card, title made safe, owner or queue,
how late); a list longer than LINES ends with "…and N more" and the command that shows them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.blocks.lists import handoff_line
from bot.text import truncate
from handoffs.model import Handoff
from storage.digest import DigestContent

LINES = 15  # per list: 2 × 15 lines + headings stay well under the 50 blocks of a message
FALLBACK_LIMIT = 300


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _section(heading: str, handoffs: Sequence[Handoff], total: int, now: datetime, *, more_hint: str) -> list[Block]:
    if total == 0:
        return []
    blocks: list[Block] = [SectionBlock(text=_md(f"*{heading}* ({total})"))]
    shown = list(handoffs[:LINES])
    blocks.extend(handoff_line(handoff, now, team_domain=None) for handoff in shown)
    if total > len(shown):
        blocks.append(ContextBlock(elements=[_md(f"…and {total - len(shown)} more; {more_hint}")]))
    return blocks


def _counts(content: DigestContent) -> str:
    if content.is_empty:
        return "✅ All clear: nothing is stalled or escalated."
    return f"*{content.stalled_total}* stalled · *{content.escalated_total}* escalated and not finished"


def digest_message(content: DigestContent, *, day: date, now: datetime) -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage: `day` is the digest's date in the configured time zone."""
    heading = f"Handoff digest · {day.strftime('%a %d %b %Y')}"
    blocks: list[Block] = [HeaderBlock(text=heading), SectionBlock(text=_md(_counts(content)))]
    blocks += _section("🚨 Escalated", content.escalated, content.escalated_total, now,
                       more_hint="see `/handoff stalled`")
    blocks += _section("⏰ Stalled, most overdue first", content.stalled, content.stalled_total, now,
                       more_hint="`/handoff stalled` lists them all")
    fallback = (f"{heading}: all clear" if content.is_empty else
                f"{heading}: {content.stalled_total} stalled, {content.escalated_total} escalated")
    return {"text": truncate(fallback, FALLBACK_LIMIT), "blocks": [block.to_dict() for block in blocks]}
