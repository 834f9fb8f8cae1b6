"""The handoff funnel, computed from the event log (never from counters kept by hand).

Period semantics (a cohort view): the figures of a period `P` asked at `now` describe the handoffs
CREATED in `[now - P, now)` and everything their event log records up to and including `now`. A handoff
created on day 1 of a 7-day period and closed on day 5 counts once, fully; a handoff created before the
period is not counted even if it was closed inside it. That keeps rates meaningful: every numerator is a
subset of the same `created` denominator.

Per handoff, each stage is read from its events:

- claimed: it reached status `claimed` (a `created` event with to_status `claimed`, i.e. routed straight
  to a person; a `claimed` event; or a `reassigned` event that gave an open handoff an owner).
  time to claim = created -> the first of those.
- approved: it has an `approved` event (also one that closed it, with `close_on_approve`).
- time to decision = created -> the first `approved` or `rejected` event.
- closed / rejected: where the handoff stands at `now`: the last finishing event (`closed`, `rejected`,
  or an `approved` that closed it) not followed by a `reopened`. So closed + rejected + in_progress = created.
  The outcome is that event's data.outcome (`approved` for an approve that closed it).
  time to close = created -> that finishing event (for a rejected handoff, its rejection).
- completed: closed with an outcome that is not non-completing (`no_action`, `duplicate`);
  completion_rate = completed / created, None when nothing was created.
- edited, nudged, escalated, reopened, refused: the number of such events and of handoffs with one.
- stall_reasons: what people said when a nudge asked them (`stall_reason` events), counted by reason.

Medians and p90s are in seconds, interpolated linearly between the closest ranks (numpy's default,
`statistics.quantiles(method="inclusive")`), None when there is no sample.

Breakdowns group the same figures by kind, route, owner (the current owner) and producer (`created_by`,
else whoever submitted it: the `created` event's actor). A missing route or owner is grouped under
`NONE_KEY`. "Stalled now" is not a cohort figure: it is every handoff stalled at `now` (SPEC §5), which
storage counts from `stall_at < now` and passes in.

This module is pure: it imports neither Slack nor the database.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from handoffs.config import NON_COMPLETING_OUTCOMES
from handoffs.durations import parse_duration
from handoffs.model import Event

NONE_KEY = "(none)"
MAX_PERIOD_DAYS = 365
_PERIOD = re.compile(r"^\s*(\d+)\s*d\s*$")
_CLAIMING = frozenset({"created", "claimed", "reassigned"})
_FINISHING = frozenset({"closed", "approved", "rejected"})
_STALL_REASON_EVENTS = frozenset({"stall_reason"})
_COUNTED_EVENTS = ("edited", "nudged", "escalated", "reopened", "refused")


# --- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffFacts:
    """What the figures need to know about one handoff besides its events."""

    id: int
    kind: str
    created_at: datetime
    route: str | None = None
    owner: str | None = None
    created_by: str | None = None
    submitted_by: str | None = None


class MetricsSource(Protocol):
    """Storage's side: the cohort of a period and the stalled count."""

    def cohort(self, *, since: datetime, until: datetime) -> tuple[list[HandoffFacts], list[Event]]:
        """Handoffs created in [since, until) and their events at or before `until`."""
        ...

    def count_stalled(self, *, now: datetime) -> int: ...


def parse_period(text: str) -> timedelta:
    """`7d`, `30d`, `90d` (any whole number of days from 1d to 365d); ValueError otherwise."""
    match = _PERIOD.match(str(text))
    message = f"period must be a number of days from 1d to {MAX_PERIOD_DAYS}d, such as 7d, 30d or 90d: got {text!r}"
    if not match:
        raise ValueError(message)
    try:
        period = parse_duration(f"{match.group(1)}d")
    except ValueError:
        raise ValueError(message) from None
    if period > timedelta(days=MAX_PERIOD_DAYS):
        raise ValueError(message)
    return period


def period_label(period: timedelta) -> str:
    return f"{period.days}d"


# --- outputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """How many events of one kind, and how many handoffs had at least one."""

    events: int = 0
    handoffs: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "handoffs": self.handoffs}


@dataclass(frozen=True)
class Timing:
    """A distribution of durations in seconds."""

    count: int = 0
    median: float | None = None
    p90: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "median_seconds": self.median, "p90_seconds": self.p90}


@dataclass(frozen=True)
class Figures:
    created: int = 0
    claimed: int = 0
    approved: int = 0
    rejected: int = 0
    closed: int = 0
    in_progress: int = 0
    closed_by_outcome: Mapping[str, int] = field(default_factory=dict)
    completed: int = 0
    completion_rate: float | None = None
    edited: Tally = Tally()
    nudged: Tally = Tally()
    escalated: Tally = Tally()
    reopened: Tally = Tally()
    refused: Tally = Tally()
    stall_reasons: Mapping[str, int] = field(default_factory=dict)
    time_to_claim: Timing = Timing()
    time_to_decision: Timing = Timing()
    time_to_close: Timing = Timing()

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created, "claimed": self.claimed, "approved": self.approved,
            "rejected": self.rejected, "closed": self.closed, "in_progress": self.in_progress,
            "closed_by_outcome": dict(self.closed_by_outcome), "completed": self.completed,
            "completion_rate": self.completion_rate,
            **{name: getattr(self, name).as_dict() for name in _COUNTED_EVENTS},
            "stall_reasons": dict(self.stall_reasons),
            "time_to_claim": self.time_to_claim.as_dict(),
            "time_to_decision": self.time_to_decision.as_dict(),
            "time_to_close": self.time_to_close.as_dict(),
        }


@dataclass(frozen=True)
class Stats:
    period: str
    since: datetime
    until: datetime
    stalled_now: int
    total: Figures
    by_kind: Mapping[str, Figures]
    by_route: Mapping[str, Figures]
    by_owner: Mapping[str, Figures]
    by_producer: Mapping[str, Figures]

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period, "since": self.since.isoformat(), "until": self.until.isoformat(),
            "stalled_now": self.stalled_now, "total": self.total.as_dict(),
            "by_kind": _groups_dict(self.by_kind), "by_route": _groups_dict(self.by_route),
            "by_owner": _groups_dict(self.by_owner), "by_producer": _groups_dict(self.by_producer),
        }


def _groups_dict(groups: Mapping[str, Figures]) -> dict[str, Any]:
    return {key: figures.as_dict() for key, figures in groups.items()}


# --- one handoff's journey -------------------------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """One handoff's stages, read from its events."""

    handoff: HandoffFacts
    producer: str
    claimed_after: float | None
    decided_after: float | None
    approved: bool
    finished_as: str | None  # "closed", "rejected", or None while in progress
    outcome: str | None
    finished_after: float | None
    event_counts: Mapping[str, int]
    stall_reasons: tuple[str, ...]


def journey(handoff: HandoffFacts, events: Sequence[Event]) -> Journey:
    """`events` are this handoff's events, in any order."""
    ordered = sorted(events, key=lambda e: (e.at, e.id))
    claimed = _first(ordered, lambda e: e.action in _CLAIMING and e.to_status == "claimed")
    decided = _first(ordered, lambda e: e.action in ("approved", "rejected"))
    finish = _finish(ordered)
    return Journey(
        handoff=handoff,
        producer=_producer(handoff, ordered),
        claimed_after=_seconds_after(handoff, claimed),
        decided_after=_seconds_after(handoff, decided),
        approved=any(e.action == "approved" for e in ordered),
        finished_as=finish.to_status if finish else None,
        outcome=_outcome(finish) if finish and finish.to_status == "closed" else None,
        finished_after=_seconds_after(handoff, finish),
        event_counts=Counter(e.action for e in ordered if e.action in _COUNTED_EVENTS),
        stall_reasons=tuple(_stall_reason(e) for e in ordered if _stall_reason(e)),
    )


def _first(events: Iterable[Event], matches: Callable[[Event], bool]) -> Event | None:
    return next((e for e in events if matches(e)), None)


def _finish(ordered: Sequence[Event]) -> Event | None:
    """The event that finished the handoff as it stands now, or None if it is still in progress."""
    finish: Event | None = None
    for event in ordered:
        if event.action == "reopened":
            finish = None
        elif event.action in _FINISHING and event.to_status in ("closed", "rejected"):
            finish = event
    return finish


def _outcome(event: Event) -> str:
    outcome = event.data.get("outcome")
    return str(outcome) if outcome else "unknown"


def _stall_reason(event: Event) -> str:
    if event.action not in _STALL_REASON_EVENTS:
        return ""
    reason = event.data.get("reason")
    return reason.strip() if isinstance(reason, str) else ""


def _producer(handoff: HandoffFacts, ordered: Sequence[Event]) -> str:
    if handoff.created_by:
        return handoff.created_by
    if handoff.submitted_by:
        return handoff.submitted_by
    created = _first(ordered, lambda e: e.action == "created")
    return created.actor if created else NONE_KEY


def _seconds_after(handoff: HandoffFacts, event: Event | None) -> float | None:
    return None if event is None else (event.at - handoff.created_at).total_seconds()


# --- figures ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timing(values: Sequence[float | None]) -> Timing:
    samples = [v for v in values if v is not None]
    return Timing(len(samples), _round(percentile(samples, 0.5)), _round(percentile(samples, 0.9)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _tally(journeys: Sequence[Journey], action: str) -> Tally:
    counts = [j.event_counts.get(action, 0) for j in journeys]
    return Tally(sum(counts), sum(1 for c in counts if c))


def figures(journeys: Sequence[Journey], *, non_completing: frozenset[str] = NON_COMPLETING_OUTCOMES) -> Figures:
    created = len(journeys)
    closed = [j for j in journeys if j.finished_as == "closed"]
    rejected = sum(1 for j in journeys if j.finished_as == "rejected")
    completed = sum(1 for j in closed if j.outcome not in non_completing)
    return Figures(
        created=created,
        claimed=sum(1 for j in journeys if j.claimed_after is not None),
        approved=sum(1 for j in journeys if j.approved),
        rejected=rejected,
        closed=len(closed),
        in_progress=created - len(closed) - rejected,
        closed_by_outcome=_sorted_counts(j.outcome or "unknown" for j in closed),
        completed=completed,
        completion_rate=completed / created if created else None,
        edited=_tally(journeys, "edited"),
        nudged=_tally(journeys, "nudged"),
        escalated=_tally(journeys, "escalated"),
        reopened=_tally(journeys, "reopened"),
        refused=_tally(journeys, "refused"),
        stall_reasons=_sorted_counts(reason for j in journeys for reason in j.stall_reasons),
        time_to_claim=timing([j.claimed_after for j in journeys]),
        time_to_decision=timing([j.decided_after for j in journeys]),
        time_to_close=timing([j.finished_after for j in journeys]),
    )


def _sorted_counts(keys: Iterable[str]) -> dict[str, int]:
    counts = Counter(keys)
    return {key: counts[key] for key in sorted(counts)}


def _breakdown(
    journeys: Sequence[Journey], key: Callable[[Journey], str | None], non_completing: frozenset[str]
) -> dict[str, Figures]:
    groups: dict[str, list[Journey]] = defaultdict(list)
    for item in journeys:
        groups[key(item) or NONE_KEY].append(item)
    return {name: figures(groups[name], non_completing=non_completing) for name in sorted(groups)}


def compute_stats(
    handoffs: Iterable[HandoffFacts],
    events: Iterable[Event],
    *,
    now: datetime,
    period: timedelta,
    stalled_now: int = 0,
    non_completing: frozenset[str] = NON_COMPLETING_OUTCOMES,
) -> Stats:
    """The figures of the handoffs created in [now - period, now), from their events up to `now`."""
    since = now - period
    cohort = {h.id: h for h in handoffs if since <= h.created_at < now}
    by_handoff: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if event.handoff_id in cohort and event.at <= now:
            by_handoff[event.handoff_id].append(event)
    journeys = [journey(h, by_handoff[h.id]) for h in cohort.values()]
    return Stats(
        period=period_label(period),
        since=since,
        until=now,
        stalled_now=stalled_now,
        total=figures(journeys, non_completing=non_completing),
        by_kind=_breakdown(journeys, lambda j: j.handoff.kind, non_completing),
        by_route=_breakdown(journeys, lambda j: j.handoff.route, non_completing),
        by_owner=_breakdown(journeys, lambda j: j.handoff.owner, non_completing),
        by_producer=_breakdown(journeys, lambda j: j.producer, non_completing),
    )


def collect_stats(source: MetricsSource, *, period: timedelta, now: datetime) -> Stats:
    """Load a period's cohort and the stalled count from `source`, and compute the figures."""
    handoffs, events = source.cohort(since=now - period, until=now)
    return compute_stats(handoffs, events, now=now, period=period, stalled_now=source.count_stalled(now=now))
