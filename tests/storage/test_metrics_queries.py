"""The cohort reads behind the funnel figures, on SQLite and PostgreSQL, seeded through the real service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy

from bot.runtime import Runtime, build_runtime
from handoffs.config import HandoffConfig
from handoffs.lifecycle import Action, Request
from handoffs.metrics import collect_stats
from storage.metrics_queries import MetricsQueries
from tests.conftest import API_TOKEN_NAME, make_settings
from tests.factories import NOW, payload
from tests.metrics_scenario import (
    ANNA,
    EXPECTED_7D_BY_PRODUCER,
    EXPECTED_7D_TOTAL,
    EXPECTED_30D_TOTAL,
    EXPECTED_STALLED_NOW,
    FakeClock,
    seed_funnel,
    submit_at,
)

WEEK = timedelta(days=7)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(database_url: str, handoff_config: HandoffConfig, clock: FakeClock) -> Iterator[Runtime]:
    rt = build_runtime(make_settings(database_url), config=handoff_config, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def queries(runtime: Runtime) -> MetricsQueries:
    return MetricsQueries(runtime.db)


def test_cohort_is_the_handoffs_created_in_the_period_with_their_events(
    runtime: Runtime, clock: FakeClock, queries: MetricsQueries
) -> None:
    ids = seed_funnel(runtime, clock)

    handoffs, events = queries.cohort(since=NOW - WEEK, until=NOW)

    assert [h.id for h in handoffs] == [ids[letter] for letter in "ABCDE"]  # F was created 8 days ago
    b = next(h for h in handoffs if h.id == ids["B"])
    assert (b.kind, b.route, b.owner, b.created_by, b.submitted_by) == ("lead", "hot-leads", "UANNA", None,
                                                                       API_TOKEN_NAME)
    assert b.created_at == NOW - timedelta(days=3) + timedelta(hours=1)
    actions = {letter: [e.action for e in events if e.handoff_id == ids[letter]] for letter in "ABCDE"}
    assert actions == {
        "A": ["created", "claimed", "closed"],
        "B": ["created", "approved", "closed"],
        "C": ["created", "claimed", "approved"],
        "D": ["created", "claimed", "refused", "edited", "edited", "rejected"],
        "E": ["created"],
    }
    created_b = next(e for e in events if e.handoff_id == ids["B"] and e.action == "created")
    assert (created_b.actor, created_b.to_status) == (API_TOKEN_NAME, "claimed")
    approve_c = next(e for e in events if e.handoff_id == ids["C"] and e.action == "approved")
    assert (approve_c.to_status, approve_c.data["outcome"]) == ("closed", "approved")


def test_cohort_bounds_are_created_at_since_inclusive_until_exclusive_and_events_up_to_until(
    runtime: Runtime, clock: FakeClock, queries: MetricsQueries
) -> None:
    since = NOW - WEEK
    before = submit_at(runtime, clock, since - timedelta(seconds=1), payload())
    first = submit_at(runtime, clock, since, payload())
    last = submit_at(runtime, clock, NOW - timedelta(seconds=1), payload())
    at_until = submit_at(runtime, clock, NOW, payload())
    clock.now = NOW
    runtime.service.act(first, Request(Action.claim), ANNA)
    clock.now = NOW + timedelta(seconds=1)
    runtime.service.act(last, Request(Action.claim), ANNA)

    handoffs, events = queries.cohort(since=since, until=NOW)

    assert [h.id for h in handoffs] == [first, last]
    assert before not in {h.id for h in handoffs} and at_until not in {h.id for h in handoffs}
    assert [(e.handoff_id, e.action) for e in events] == [(first, "created"), (first, "claimed"),
                                                          (last, "created")]


def test_count_stalled_counts_what_is_past_its_deadline_now(
    runtime: Runtime, clock: FakeClock, queries: MetricsQueries
) -> None:
    ids = seed_funnel(runtime, clock)

    assert queries.count_stalled(now=NOW) == EXPECTED_STALLED_NOW
    # E (created T0+4h, normal urgency) was not yet past its 4h claim deadline one minute before it
    e_created = NOW - timedelta(days=3) + timedelta(hours=4)
    assert queries.count_stalled(now=e_created + timedelta(hours=4) - timedelta(minutes=1)) == 0
    assert runtime.service.get(ids["E"]).claim_by == e_created + timedelta(hours=4)


def test_figures_from_the_database_match_the_hand_computed_ones(
    runtime: Runtime, clock: FakeClock, queries: MetricsQueries
) -> None:
    seed_funnel(runtime, clock)

    week = collect_stats(queries, period=WEEK, now=NOW)
    month = collect_stats(queries, period=timedelta(days=30), now=NOW)

    assert week.stalled_now == EXPECTED_STALLED_NOW
    assert week.total.as_dict() == EXPECTED_7D_TOTAL
    assert {name: f.as_dict() for name, f in week.by_producer.items()} == EXPECTED_7D_BY_PRODUCER
    assert month.total.as_dict() == EXPECTED_30D_TOTAL


def test_handoffs_created_at_is_indexed(runtime: Runtime) -> None:
    indexes = sqlalchemy.inspect(runtime.db.reader).get_indexes("handoffs")
    assert any(i["name"] == "ix_handoffs_created_at" and i["column_names"] == ["created_at"] for i in indexes)
