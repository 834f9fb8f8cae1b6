"""The funnel figures from a hand-built event log with known timings (pure: no database, no Slack)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from handoffs.metrics import (
    NONE_KEY,
    HandoffFacts,
    compute_stats,
    parse_period,
    percentile,
)
from handoffs.model import Event
from tests.factories import NOW

T0 = NOW - timedelta(days=2)
WEEK = timedelta(days=7)
_ids = itertools.count(1)


def ev(handoff_id: int, action: str, at: datetime, to_status: str | None, *, actor: str = "UANNA",
       from_status: str | None = None, **data: Any) -> Event:
    return Event(next(_ids), handoff_id, action, actor, at, from_status, to_status, data)


def m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


# The log, by hand (times after each handoff's creation):
#  1 task  default    UANNA  agent-a  created open; claimed 10m; edited 20m, 30m; `need info` 35m; closed done 1h
#                                     (an edit at NOW+1m is after `now`: ignored)
#  2 lead  hot-leads  UBEN   (token)  created claimed (routed to a person); approved 2h; closed won 3h
#  3 reply review     ULEAD  agent-a  created open; claimed 30m; approved 45m, closing it as `approved`
#  4 task  default    -      agent-b  created open; refused approve 1h; nudged 4h; stall reason `blocked` 4h30;
#                                     escalated 5h
#  5 task  default    UANNA  agent-b  created open; claimed 20m; rejected 40m; refused claim 50m
#  6 task  default    UBEN   agent-a  created open; claimed 5m; closed no_action 15m
#  7 task  -          -      UPERSON  created open; claimed 1h; closed done 2h; reopened 3h; nudged with reason
#                                     `blocked` 4h  (still in progress)
#  8 task, created 8 days ago and closed inside the period: not in the 7-day cohort
#  9 task, created exactly at `now`: not in [now - 7d, now)
HANDOFFS = [
    HandoffFacts(1, "task", T0, "default", "UANNA", "agent-a", "producer"),
    HandoffFacts(2, "lead", T0 + h(1), "hot-leads", "UBEN", None, "producer"),
    HandoffFacts(3, "reply", T0 + h(2), "review", "ULEAD", "agent-a", "producer"),
    HandoffFacts(4, "task", T0 + h(3), "default", None, "agent-b", "producer"),
    HandoffFacts(5, "task", T0 + h(4), "default", "UANNA", "agent-b", "producer"),
    HandoffFacts(6, "task", T0 + h(5), "default", "UBEN", "agent-a", "producer"),
    HandoffFacts(7, "task", T0 + h(6), None, None, None, None),
    HandoffFacts(8, "task", NOW - timedelta(days=8), "default", "UANNA", "agent-a", "producer"),
    HandoffFacts(9, "task", NOW, "default", None, "agent-a", "producer"),
]


def _log() -> list[Event]:
    c = {f.id: f.created_at for f in HANDOFFS}
    return [
        ev(1, "created", c[1], "open", actor="producer"),
        ev(1, "claimed", c[1] + m(10), "claimed", from_status="open"),
        ev(1, "edited", c[1] + m(20), "claimed", changes={"title": {"old": "a", "new": "b"}}),
        ev(1, "edited", c[1] + m(30), "claimed", changes={"title": {"old": "b", "new": "c"}}),
        ev(1, "stall_reason", c[1] + m(35), "claimed", reason="need info"),
        ev(1, "closed", c[1] + h(1), "closed", from_status="claimed", outcome="done"),
        ev(1, "edited", NOW + m(1), "closed"),
        ev(2, "created", c[2], "claimed", actor="producer"),
        ev(2, "approved", c[2] + h(2), "approved", actor="UMANAGER", from_status="claimed"),
        ev(2, "closed", c[2] + h(3), "closed", actor="UBEN", from_status="approved", outcome="won"),
        ev(3, "created", c[3], "open", actor="producer"),
        ev(3, "claimed", c[3] + m(30), "claimed", actor="ULEAD"),
        ev(3, "approved", c[3] + m(45), "closed", actor="ULEAD", outcome="approved"),
        ev(4, "created", c[4], "open", actor="producer"),
        ev(4, "refused", c[4] + h(1), "open", actor="USTRANGER", attempted="approve", code="not_allowed", reason="no"),
        ev(4, "nudged", c[4] + h(4), "open", actor="handoff-bot", to="CHANDOFFS"),
        ev(4, "stall_reason", c[4] + h(4.5), "open", actor="UBEN", reason="blocked"),
        ev(4, "escalated", c[4] + h(5), "open", actor="handoff-bot", to="CLEADS"),
        ev(5, "created", c[5], "open", actor="producer"),
        ev(5, "claimed", c[5] + m(20), "claimed"),
        ev(5, "rejected", c[5] + m(40), "rejected", reason="not ours"),
        ev(5, "refused", c[5] + m(50), "rejected", actor="UBEN", attempted="claim", code="terminal", reason="no"),
        ev(6, "created", c[6], "open", actor="producer"),
        ev(6, "claimed", c[6] + m(5), "claimed", actor="UBEN"),
        ev(6, "closed", c[6] + m(15), "closed", actor="UBEN", outcome="no_action"),
        ev(7, "created", c[7], "open", actor="UPERSON"),
        ev(7, "claimed", c[7] + h(1), "claimed"),
        ev(7, "closed", c[7] + h(2), "closed", outcome="done"),
        ev(7, "reopened", c[7] + h(3), "open", actor="UMANAGER"),
        ev(7, "nudged", c[7] + h(4), "open", actor="sla", reason="unclaimed"),  # why it is late: no stall reason
        ev(7, "stall_reason", c[7] + h(5), "open", actor="UBEN", reason="blocked"),
        ev(8, "created", NOW - timedelta(days=8), "open", actor="producer"),
        ev(8, "claimed", NOW - timedelta(days=8) + h(1), "claimed"),
        ev(8, "closed", NOW - timedelta(days=1), "closed", outcome="done"),
        ev(9, "created", NOW, "open", actor="producer"),
    ]


@pytest.fixture
def stats() -> Any:
    events = _log()
    random.Random(7).shuffle(events)  # order comes from the timestamps, not the input
    return compute_stats(HANDOFFS, events, now=NOW, period=WEEK, stalled_now=4)


def test_totals(stats: Any) -> None:
    total = stats.total
    assert (total.created, total.claimed, total.approved, total.rejected, total.closed, total.in_progress) == (
        7, 6, 2, 1, 4, 2)
    assert total.closed_by_outcome == {"approved": 1, "done": 1, "no_action": 1, "won": 1}
    # completed: 1 done, 2 won, 3 approved (6 no_action does not complete; 7 was reopened)
    assert total.completed == 3
    assert total.completion_rate == pytest.approx(3 / 7)
    assert total.edited.as_dict() == {"events": 2, "handoffs": 1}
    assert total.nudged.as_dict() == {"events": 2, "handoffs": 2}
    assert total.escalated.as_dict() == {"events": 1, "handoffs": 1}
    assert total.reopened.as_dict() == {"events": 1, "handoffs": 1}
    assert total.refused.as_dict() == {"events": 2, "handoffs": 2}
    assert total.stall_reasons == {"blocked": 2, "need info": 1}
    assert stats.stalled_now == 4


def test_timings(stats: Any) -> None:
    total = stats.total
    # claim: 1 600, 2 0, 3 1800, 5 1200, 6 300, 7 3600 -> [0, 300, 600, 1200, 1800, 3600]
    #   median (600 + 1200) / 2 = 900; p90 at rank 4.5 -> 1800 + 0.5 * 1800 = 2700
    assert total.time_to_claim.as_dict() == {"count": 6, "median_seconds": 900.0, "p90_seconds": 2700.0}
    # decision: 2 7200, 3 2700, 5 2400 -> median 2700; p90 at rank 1.8 -> 2700 + 0.8 * 4500 = 6300
    assert total.time_to_decision.as_dict() == {"count": 3, "median_seconds": 2700.0, "p90_seconds": 6300.0}
    # close: 1 3600, 2 10800, 3 2700, 5 2400, 6 900 (7 is open again) -> [900, 2400, 2700, 3600, 10800]
    #   median 2700; p90 at rank 3.6 -> 3600 + 0.6 * 7200 = 7920
    assert total.time_to_close.as_dict() == {"count": 5, "median_seconds": 2700.0, "p90_seconds": 7920.0}


def test_by_kind(stats: Any) -> None:
    assert sorted(stats.by_kind) == ["lead", "reply", "task"]
    task = stats.by_kind["task"]  # 1, 4, 5, 6, 7
    assert (task.created, task.claimed, task.closed, task.rejected, task.in_progress, task.completed) == (
        5, 4, 2, 1, 2, 1)
    assert task.completion_rate == pytest.approx(0.2)
    # claim [300, 600, 1200, 3600]: median 900; p90 at rank 2.7 -> 1200 + 0.7 * 2400 = 2880
    assert (task.time_to_claim.median, task.time_to_claim.p90) == (900.0, 2880.0)
    assert stats.by_kind["reply"].as_dict() == {
        "created": 1, "claimed": 1, "approved": 1, "rejected": 0, "closed": 1, "in_progress": 0,
        "closed_by_outcome": {"approved": 1}, "completed": 1, "completion_rate": 1.0,
        "edited": {"events": 0, "handoffs": 0}, "nudged": {"events": 0, "handoffs": 0},
        "escalated": {"events": 0, "handoffs": 0}, "reopened": {"events": 0, "handoffs": 0},
        "refused": {"events": 0, "handoffs": 0}, "stall_reasons": {},
        "time_to_claim": {"count": 1, "median_seconds": 1800.0, "p90_seconds": 1800.0},
        "time_to_decision": {"count": 1, "median_seconds": 2700.0, "p90_seconds": 2700.0},
        "time_to_close": {"count": 1, "median_seconds": 2700.0, "p90_seconds": 2700.0},
    }


def test_by_route_owner_and_producer(stats: Any) -> None:
    def created(groups: Any) -> dict[str, int]:
        return {name: f.created for name, f in groups.items()}

    assert created(stats.by_route) == {NONE_KEY: 1, "default": 4, "hot-leads": 1, "review": 1}
    assert created(stats.by_owner) == {NONE_KEY: 2, "UANNA": 2, "UBEN": 2, "ULEAD": 1}
    # 2 has no created_by: its submitter; 7 has neither: the `created` event's actor
    assert created(stats.by_producer) == {"UPERSON": 1, "agent-a": 3, "agent-b": 2, "producer": 1}
    unowned = stats.by_owner[NONE_KEY]  # 4 and 7
    assert (unowned.claimed, unowned.nudged.events, unowned.escalated.handoffs, unowned.reopened.events) == (
        1, 2, 1, 1)
    assert unowned.stall_reasons == {"blocked": 2}
    ben = stats.by_owner["UBEN"]  # 2 (won) and 6 (no_action)
    assert (ben.closed_by_outcome, ben.completed, ben.completion_rate) == ({"no_action": 1, "won": 1}, 1, 0.5)
    # 2 claim 0, 6 claim 300: median 150, p90 at rank 0.9 -> 270
    assert (ben.time_to_claim.median, ben.time_to_claim.p90) == (150.0, 270.0)
    agent_b = stats.by_producer["agent-b"]  # 4 and 5
    assert (agent_b.rejected, agent_b.refused.as_dict(), agent_b.escalated.events) == (
        1, {"events": 2, "handoffs": 2}, 1)


def test_as_dict_shape(stats: Any) -> None:
    body = stats.as_dict()
    assert set(body) == {"period", "since", "until", "stalled_now", "total", "by_kind", "by_route", "by_owner",
                         "by_producer"}
    assert (body["period"], body["since"], body["until"]) == ("7d", (NOW - WEEK).isoformat(), NOW.isoformat())
    assert body["total"] == stats.total.as_dict()
    assert body["by_owner"][NONE_KEY]["created"] == 2


def test_a_refused_event_does_not_claim_or_finish() -> None:
    """Refused events carry the status the handoff had: never a stage reached."""
    facts = HandoffFacts(1, "task", T0, "default", None, "agent-a")
    events = [ev(1, "created", T0, "open"), ev(1, "refused", T0 + m(1), "claimed", attempted="claim"),
              ev(1, "refused", T0 + m(2), "closed", attempted="close"), ev(1, "edited", T0 + m(3), "claimed")]
    total = compute_stats([facts], events, now=NOW, period=WEEK).total
    assert (total.claimed, total.closed, total.in_progress, total.refused.events) == (0, 0, 1, 2)
    assert total.time_to_claim.count == 0


def test_reassigning_an_open_handoff_counts_as_its_claim() -> None:
    facts = HandoffFacts(1, "task", T0, "default", "UBEN", "agent-a")
    events = [ev(1, "created", T0, "open"), ev(1, "reassigned", T0 + m(7), "claimed", from_status="open",
                                                 to="UBEN")]
    total = compute_stats([facts], events, now=NOW, period=WEEK).total
    assert (total.claimed, total.time_to_claim.median) == (1, 420.0)


def test_nothing_created() -> None:
    stats = compute_stats([], [], now=NOW, period=WEEK, stalled_now=2)
    assert stats.total.created == 0
    assert stats.total.completion_rate is None
    assert stats.total.time_to_close.as_dict() == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert (stats.by_kind, stats.stalled_now) == ({}, 2)


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(1, 11))), 0.9) == pytest.approx(9.1)


@pytest.mark.parametrize(("text", "days"), [("7d", 7), ("30d", 30), ("90d", 90), ("1d", 1), ("365d", 365),
                                             (" 14d ", 14)])
def test_parse_period(text: str, days: int) -> None:
    assert parse_period(text) == timedelta(days=days)


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "366d", "4h", "1w", "-7d", "7.5d", "seven days", "7dd"])
def test_parse_period_refuses_anything_but_days(text: str) -> None:
    with pytest.raises(ValueError, match=r"period must be a number of days from 1d to 365d, such as 7d"):
        parse_period(text)
