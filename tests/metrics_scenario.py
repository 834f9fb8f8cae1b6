"""A funnel seeded through the real service on a fake clock, and its figures worked out by hand.

Used by the storage test (tests/storage/test_metrics_queries.py) and the HTTP test (tests/bot/test_stats_api.py).
All times are relative to NOW, the moment the figures are asked for; T0 = NOW - 3 days.

  F  task   created NOW-8d by agent-a   UANNA claims +1h, closes `done` at NOW-6d   (outside 7d, inside 30d)
  A  task   created T0    by agent-a    UANNA claims +10m, closes `done` +1h
  B  lead   created T0+1h, no created_by (the token `producer` submits it): round robin gives it to UANNA at
            creation; UMANAGER approves +2h; UANNA closes `won` +4h
  C  reply  created T0+2h by agent-b    UBEN claims +30m, approves +1h (close_on_approve: closed as `approved`)
  D  task   created T0+3h by agent-b    UBEN claims +20m; UANNA's claim is refused +25m; UBEN edits +30m and +40m;
            UBEN rejects +50m
  E  task   created T0+4h by agent-a    never claimed: open past its 4h claim deadline, so stalled now
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.runtime import Runtime
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import HandoffEdit, HandoffIn
from tests.conftest import API_TOKEN_NAME
from tests.factories import NOW, lead, payload

T0 = NOW - timedelta(days=3)
ANNA, BEN, MANAGER = Actor("UANNA"), Actor("UBEN"), Actor("UMANAGER")
MIN = 60
HOUR = 3600


class FakeClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def submit_at(runtime: Runtime, clock: FakeClock, at: datetime, body: dict[str, Any]) -> int:
    clock.now = at
    return runtime.service.submit(HandoffIn.model_validate(body), actor=API_TOKEN_NAME).handoff.id


def _act(runtime: Runtime, clock: FakeClock, at: datetime, handoff_id: int, actor: Actor, request: Request) -> None:
    clock.now = at
    runtime.service.act(handoff_id, request, actor)


def seed_funnel(runtime: Runtime, clock: FakeClock) -> dict[str, int]:
    """Seed the handoffs described above; return their ids by letter. Leaves the clock at NOW."""
    ids: dict[str, int] = {}

    def act(at: datetime, letter: str, actor: Actor, request: Request) -> None:
        _act(runtime, clock, at, ids[letter], actor, request)

    f0 = NOW - timedelta(days=8)
    ids["F"] = submit_at(runtime, clock, f0, payload(kind="task", created_by="agent-a"))
    act(f0 + timedelta(hours=1), "F", ANNA, Request(Action.claim))
    act(NOW - timedelta(days=6), "F", ANNA, Request(Action.close, outcome="done"))

    ids["A"] = submit_at(runtime, clock, T0, payload(kind="task", created_by="agent-a"))
    act(T0 + timedelta(minutes=10), "A", ANNA, Request(Action.claim))
    act(T0 + timedelta(hours=1), "A", ANNA, Request(Action.close, outcome="done"))

    b0 = T0 + timedelta(hours=1)
    ids["B"] = submit_at(runtime, clock, b0, lead(urgency="high"))
    act(b0 + timedelta(hours=2), "B", MANAGER, Request(Action.approve))
    act(b0 + timedelta(hours=4), "B", ANNA, Request(Action.close, outcome="won"))

    c0 = T0 + timedelta(hours=2)
    ids["C"] = submit_at(runtime, clock, c0, payload(kind="reply", created_by="agent-b", draft="Hi Jane"))
    act(c0 + timedelta(minutes=30), "C", BEN, Request(Action.claim))
    act(c0 + timedelta(hours=1), "C", BEN, Request(Action.approve))

    d0 = T0 + timedelta(hours=3)
    ids["D"] = submit_at(runtime, clock, d0, payload(kind="task", created_by="agent-b"))
    act(d0 + timedelta(minutes=20), "D", BEN, Request(Action.claim))
    with pytest.raises(Refused):  # already claimed by UBEN: logged as `refused`
        act(d0 + timedelta(minutes=25), "D", ANNA, Request(Action.claim))
    act(d0 + timedelta(minutes=30), "D", BEN, Request(Action.edit, edit=HandoffEdit(title="Call ACME back today")))
    act(d0 + timedelta(minutes=40), "D", BEN, Request(Action.edit, edit=HandoffEdit(next_action="Phone Jane now")))
    act(d0 + timedelta(minutes=50), "D", BEN, Request(Action.reject, reason="Not ours"))

    ids["E"] = submit_at(runtime, clock, T0 + timedelta(hours=4), payload(kind="task", created_by="agent-a"))
    clock.now = NOW
    return ids


def tally(events: int = 0, handoffs: int = 0) -> dict[str, int]:
    return {"events": events, "handoffs": handoffs}


def timing(count: int = 0, median: float | None = None, p90: float | None = None) -> dict[str, Any]:
    return {"count": count, "median_seconds": median, "p90_seconds": p90}


def figures(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "created": 0, "claimed": 0, "approved": 0, "rejected": 0, "closed": 0, "in_progress": 0,
        "closed_by_outcome": {}, "completed": 0, "completion_rate": None,
        "edited": tally(), "nudged": tally(), "escalated": tally(), "reopened": tally(), "refused": tally(),
        "stall_reasons": {}, "time_to_claim": timing(), "time_to_decision": timing(), "time_to_close": timing(),
    }
    base.update(values)
    return base


# 7d cohort: A, B, C, D, E (F was created before the period).
#   claim:    A 10m, B 0 (routed to a person), C 30m, D 20m -> [0, 600, 1200, 1800]
#             median (600 + 1200) / 2 = 900; p90 at rank 0.9 * 3 = 2.7 -> 1200 + 0.7 * 600 = 1620
#   decision: B 2h approve, C 1h approve, D 50m reject -> [3000, 3600, 7200]
#             median 3600; p90 at rank 1.8 -> 3600 + 0.8 * 3600 = 6480
#   close:    A 1h, B 4h, C 1h (approve closed it), D 50m (rejected) -> [3000, 3600, 3600, 14400]
#             median 3600; p90 at rank 2.7 -> 3600 + 0.7 * 10800 = 11160
#   completed: A done, B won, C approved = 3 of 5 created
EXPECTED_7D_TOTAL = figures(
    created=5, claimed=4, approved=2, rejected=1, closed=3, in_progress=1,
    closed_by_outcome={"approved": 1, "done": 1, "won": 1}, completed=3, completion_rate=0.6,
    edited=tally(2, 1), refused=tally(1, 1),
    time_to_claim=timing(4, 900.0, 1620.0),
    time_to_decision=timing(3, 3600.0, 6480.0),
    time_to_close=timing(4, 3600.0, 11160.0),
)

# Per producer: agent-a = A, E; agent-b = C, D; B has no created_by, so its submitter `producer`.
EXPECTED_7D_BY_PRODUCER = {
    "agent-a": figures(created=2, claimed=1, closed=1, in_progress=1, closed_by_outcome={"done": 1},
                       completed=1, completion_rate=0.5, time_to_claim=timing(1, 600.0, 600.0),
                       time_to_close=timing(1, 3600.0, 3600.0)),
    # C: claim 1800, decision 3600, close 3600; D: claim 1200, decision 3000, close 3000
    "agent-b": figures(created=2, claimed=2, approved=1, rejected=1, closed=1, closed_by_outcome={"approved": 1},
                       completed=1, completion_rate=0.5, edited=tally(2, 1), refused=tally(1, 1),
                       time_to_claim=timing(2, 1500.0, 1740.0), time_to_decision=timing(2, 3300.0, 3540.0),
                       time_to_close=timing(2, 3300.0, 3540.0)),
    API_TOKEN_NAME: figures(created=1, claimed=1, approved=1, closed=1, closed_by_outcome={"won": 1}, completed=1,
                            completion_rate=1.0, time_to_claim=timing(1, 0.0, 0.0),
                            time_to_decision=timing(1, 7200.0, 7200.0), time_to_close=timing(1, 14400.0, 14400.0)),
}

# Group membership, by hand.
EXPECTED_7D_CREATED_BY = {
    "by_kind": {"lead": 1, "reply": 1, "task": 3},
    "by_route": {"default": 4, "hot-leads": 1},
    "by_owner": {"(none)": 1, "UANNA": 2, "UBEN": 2},
}

# 30d adds F: claimed after 1h, closed `done` 2 days later.
#   claim [0, 600, 1200, 1800, 3600]: median 1200; p90 at rank 3.6 -> 1800 + 0.6 * 1800 = 2880
#   close [3000, 3600, 3600, 14400, 172800]: median 3600; p90 at rank 3.6 -> 14400 + 0.6 * 158400 = 109440
EXPECTED_30D_TOTAL = figures(
    created=6, claimed=5, approved=2, rejected=1, closed=4, in_progress=1,
    closed_by_outcome={"approved": 1, "done": 2, "won": 1}, completed=4, completion_rate=4 / 6,
    edited=tally(2, 1), refused=tally(1, 1),
    time_to_claim=timing(5, 1200.0, 2880.0),
    time_to_decision=timing(3, 3600.0, 6480.0),
    time_to_close=timing(5, 3600.0, 109440.0),
)

EXPECTED_STALLED_NOW = 1  # E: open, claim deadline T0+8h long past
