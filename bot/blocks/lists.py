"""Compact handoff lists for `/handoff mine` and `/handoff stalled`: one line each, paged within limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot import ids
from bot.blocks.card import URGENCY_EMOJI, owner_text
from bot.text import mrkdwn_cut
from handoffs.durations import humanize
from handoffs.model import Handoff

PAGE_SIZE = 15  # 15 lines + headings + "More" stay far below the 50-block message limit


def card_url(handoff: Handoff, team_domain: str | None) -> str | None:
    """A link to the card, built from ids (no API call): Slack's archive URL for the card's ts."""
    if not handoff.channel or not handoff.card_ts:
        return None
    host = f"https://{team_domain}.slack.com" if team_domain else "https://slack.com"
    return f"{host}/archives/{handoff.channel}/p{handoff.card_ts.replace('.', '')}"


def lateness(handoff: Handoff, now: datetime) -> str:
    deadline = handoff.stall_deadline()
    if deadline is None:
        return handoff.status.value
    if deadline <= now:
        return f"*{humanize(now - deadline)} late*"
    return f"due in {humanize(deadline - now)}"


def handoff_line(handoff: Handoff, now: datetime, *, team_domain: str | None, nudge: bool = False) -> Block:
    url = card_url(handoff, team_domain)
    ref = f"<{url}|{handoff.ref}>" if url else handoff.ref
    text = (
        f"{URGENCY_EMOJI[handoff.urgency]} *{ref}* {mrkdwn_cut(handoff.title, 150)}\n"
        f"{owner_text(handoff)} · {handoff.status.value} · {lateness(handoff, now)}"
    )
    accessory = ButtonElement(text="Nudge", action_id=ids.NUDGE, value=str(handoff.id)) if nudge else None
    return SectionBlock(text=MarkdownTextObject(text=text, verbatim=True), accessory=accessory)


def list_blocks(
    heading: str,
    handoffs: Sequence[Handoff],
    now: datetime,
    *,
    team_domain: str | None,
    nudge: bool = False,
    more_query: str | None = None,
    offset: int = 0,
    empty: str = "Nothing here.",
) -> list[dict[str, Any]]:
    """A heading, up to PAGE_SIZE lines, and a "More" button when `handoffs` holds one line more."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=f"*{heading}*"))]
    page = list(handoffs[:PAGE_SIZE])
    if not page:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=empty)]))
    blocks.extend(handoff_line(h, now, team_domain=team_domain, nudge=nudge) for h in page)
    if more_query is not None and len(handoffs) > PAGE_SIZE:
        value = json.dumps({"q": more_query, "offset": offset + PAGE_SIZE})
        blocks.append(ActionsBlock(elements=[ButtonElement(text="More", action_id=ids.LIST_PAGE, value=value)]))
    return [block.to_dict() for block in blocks]
