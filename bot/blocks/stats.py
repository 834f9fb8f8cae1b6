"""The funnel figures as a private Slack message (`/handoff stats`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot.text import mention, mrkdwn
from handoffs.durations import humanize
from handoffs.metrics import Figures, Stats, Timing
from handoffs.webhooks import DeliveryCounts

TOP_GROUPS = 5


def _span(timing: Timing) -> str:
    if not timing.count or timing.median is None:
        return "–"
    p90 = humanize(timedelta(seconds=timing.p90 or 0))
    return f"{humanize(timedelta(seconds=timing.median))} (p90 {p90})"


def _rate(figures: Figures) -> str:
    return "–" if figures.completion_rate is None else f"{figures.completion_rate:.0%}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{mrkdwn(name, 40)} {count}" for name, count in counts.items())


def _summary(figures: Figures) -> str:
    outcomes = _counts(figures.closed_by_outcome)
    stall_reasons = _counts(figures.stall_reasons)
    return (
        f"*Created* {figures.created} · *claimed* {figures.claimed} · *approved* {figures.approved} · "
        f"*rejected* {figures.rejected} · *closed* {figures.closed}" + (f" ({outcomes})" if outcomes else "") + "\n"
        f"*Edited* {figures.edited.handoffs} · *nudged* {figures.nudged.handoffs} · "
        f"*escalated* {figures.escalated.handoffs} · *completion* {_rate(figures)}\n"
        f"*Time to claim* {_span(figures.time_to_claim)} · *to decision* {_span(figures.time_to_decision)} · "
        f"*to close* {_span(figures.time_to_close)}"
        + (f"\n*Stall reasons* {stall_reasons}" if stall_reasons else "")
    )


def _group_lines(title: str, groups: Mapping[str, Figures], *, people: bool = False) -> str:
    ranked = sorted(groups.items(), key=lambda item: -item[1].created)[:TOP_GROUPS]
    lines = [
        f"• {mention(name) if people else mrkdwn(name, 60)}: {figures.created} created, {figures.closed} closed, "
        f"claim {_span(figures.time_to_claim)}"
        for name, figures in ranked
    ]
    return f"*{title}*\n" + ("\n".join(lines) if lines else "_none_")


def _webhooks_line(webhooks: DeliveryCounts | None) -> str:
    if webhooks is None:
        return ""
    failed = f"*{webhooks.failed}*" if webhooks.failed else "0"
    return f"\n*Webhooks* sent {webhooks.sent} · failed {failed} · pending {webhooks.pending}"


def stats_message(stats: Stats, webhooks: DeliveryCounts | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The figures; with `webhooks`, also the period's webhook deliveries by state."""
    text = f"Handoffs created in the last {stats.period}: {stats.total.created}; stalled now: {stats.stalled_now}."
    sections = [
        f"*Last {stats.period}* · stalled now: *{stats.stalled_now}*\n{_summary(stats.total)}"
        + _webhooks_line(webhooks),
        _group_lines("By kind", stats.by_kind),
        _group_lines("By route", stats.by_route),
        _group_lines("By owner", stats.by_owner, people=True),
        _group_lines("By producer", stats.by_producer),
    ]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": section[:3000], "verbatim": True}}
              for section in sections]
    return text, blocks
