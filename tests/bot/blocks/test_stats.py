"""The `/handoff stats` message: a pure function of the figures, checked on its blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.blocks.stats import stats_message
from handoffs.metrics import Figures, Stats, Tally

NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)


def summary_of(figures: Figures) -> str:
    stats = Stats(
        period="7d", since=NOW - timedelta(days=7), until=NOW, stalled_now=0, total=figures,
        by_kind={}, by_route={}, by_owner={}, by_producer={},
    )
    _, blocks = stats_message(stats)
    text: str = blocks[0]["text"]["text"]
    return text


def test_the_summary_counts_nudged_handoffs_and_what_people_said_stalled_them() -> None:
    figures = Figures(
        created=4, nudged=Tally(events=5, handoffs=2), stall_reasons={"blocked": 1, "need info": 1},
    )

    text = summary_of(figures)

    assert "*Edited* 0 · *nudged* 2 · *escalated* 0 · " in text
    assert text.endswith("\n*Stall reasons* blocked 1, need info 1")


def test_no_stall_reasons_line_when_nobody_gave_one() -> None:
    text = summary_of(Figures(created=1))

    assert "*nudged* 0" in text
    assert "Stall reasons" not in text


def test_a_stall_reason_is_escaped_and_cut() -> None:
    text = summary_of(Figures(created=1, stall_reasons={"<!channel> @here " + "x" * 100: 1}))

    assert "<!channel>" not in text and "@here" not in text
    assert "&lt;!channel&gt;" in text
    assert "x" * 40 not in text
