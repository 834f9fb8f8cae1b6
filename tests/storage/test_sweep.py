"""The sweep's storage on a real database: only due rows, atomic settling, one nudge per due item under contention."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.client import BadStatusLine, IncompleteRead
from typing import Any

import pytest
from alembic import command
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse
from sqlalchemy import func, select, text
from sqlmodel import col

from bot.people import MAX_LOOKUPS_PER_WARM, People
from bot.runtime import Runtime, build_runtime
from bot.sweep import Sweeper
from handoffs.config import HandoffConfig, parse_config
from handoffs.lifecycle import Action, Actor, Request, decide
from handoffs.model import Handoff, HandoffEdit
from storage import migrate
from storage.tables import EventRow, HandoffRow, NudgeScheduleRow
from tests.conftest import DEFAULT_CONFIG, make_settings
from tests.factories import handoff_in
from tests.fakes.slack_api import FakeSlack

CONFIG: dict[str, Any] = {
    **DEFAULT_CONFIG,
    "sla": {u: {"claim": "1m", "resolve": "1h"} for u in ("low", "normal", "high", "urgent")},
    "nudges": {"check_every": "1s", "repeat_every": "1m", "max_nudges": 2, "escalate_to": "CLEADS"},
}


@pytest.fixture
def handoff_config() -> HandoffConfig:
    return parse_config(CONFIG)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def submit(runtime: Runtime, count: int) -> list[int]:
    return [runtime.service.submit(handoff_in(), actor="producer").handoff.id for _ in range(count)]


def sweep_events(runtime: Runtime) -> Counter[tuple[int, str]]:
    with runtime.db.read() as session:
        rows = session.execute(
            select(col(EventRow.handoff_id), col(EventRow.action))
            .where(col(EventRow.action).in_(["nudged", "escalated"]))
        ).all()
    return Counter((handoff_id, action) for handoff_id, action in rows)


def test_only_due_handoffs_are_touched_and_each_is_written_with_its_event(runtime: Runtime) -> None:
    ids = submit(runtime, 3)
    first = runtime.repo.get(ids[0])
    assert first is not None and first.claim_by is not None
    clock = Clock(first.claim_by - timedelta(seconds=1))
    runtime.clock = clock
    assert Sweeper(runtime).tick().acted == 0
    clock.now = first.claim_by + timedelta(seconds=30)
    result = Sweeper(runtime).tick()
    assert (result.nudged, result.escalated) == (3, 0)
    after = runtime.repo.get(ids[0])
    assert after is not None and after.nudge_count == 1 and after.version == first.version + 1
    assert sweep_events(runtime) == Counter({(i, "nudged"): 1 for i in ids})
    assert Sweeper(runtime).tick().acted == 0  # the next one waits for repeat_every


def test_a_transition_decided_before_a_nudge_is_decided_again(runtime: Runtime) -> None:
    [handoff_id] = submit(runtime, 1)
    before = runtime.repo.get(handoff_id)
    assert before is not None and before.claim_by is not None
    runtime.clock = Clock(before.claim_by + timedelta(seconds=1))
    Sweeper(runtime).tick()
    stale = runtime.repo.apply(before, _claim_change(runtime, before), actor=Actor("UANNA"), effects=[],
                               now=runtime.clock())
    assert stale is None  # the nudge bumped the version: this claim must be decided again
    acted = runtime.service.act(handoff_id, Request(Action.claim), Actor("UANNA"))
    assert acted.handoff.nudge_count == 0  # a new phase


def test_a_handoff_the_policy_cannot_decide_does_not_block_the_others(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = submit(runtime, 3)
    deadline = runtime.repo.get(ids[-1]).claim_by  # type: ignore[union-attr]
    assert deadline is not None
    runtime.clock = Clock(deadline + timedelta(seconds=1))
    sweeper = Sweeper(runtime)
    original = sweeper._decide

    def poisoned(handoff: Handoff, now: datetime) -> Any:
        if handoff.id == ids[1]:
            raise ValueError("bad data")
        return original(handoff, now)

    monkeypatch.setattr(sweeper, "_decide", poisoned)
    assert sweeper.tick().nudged == 2
    with runtime.db.read() as session:
        later = session.execute(select(col(NudgeScheduleRow.next_nudge_at))
                                .where(col(NudgeScheduleRow.handoff_id) == ids[1])).scalar_one()
    assert later == runtime.clock() + timedelta(hours=1)


def test_an_edit_after_a_reminder_does_not_bring_the_next_one_sooner(
    database_url: str, handoff_config: HandoffConfig,
) -> None:
    """The reminder's time is kept on the handoff: an edit rewrites the schedule row from the deadline, and the
    next reminder used to follow at once instead of `repeat_every` (1m here) after the last."""
    clock = Clock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    runtime = build_runtime(make_settings(database_url), config=handoff_config, clock=clock)
    try:
        handoff_id = runtime.service.submit(handoff_in(owner="UANNA"), actor="producer").handoff.id
        due_at = runtime.repo.get(handoff_id).due_at  # type: ignore[union-attr]
        assert due_at is not None
        clock.now = due_at + timedelta(seconds=30)  # the first reminder goes late
        assert Sweeper(runtime).tick().nudged == 1
        nudged = runtime.repo.get(handoff_id)
        assert nudged is not None and nudged.last_nudged_at == clock.now
        clock.now += timedelta(seconds=10)
        runtime.service.act(handoff_id, Request(Action.edit, edit=HandoffEdit(summary="left a voicemail")),
                            Actor("UANNA"))
        clock.now += timedelta(seconds=10)
        assert Sweeper(runtime).tick().nudged == 0
        clock.now = nudged.last_nudged_at + timedelta(minutes=1)
        assert Sweeper(runtime).tick().nudged == 1
    finally:
        runtime.close()


def test_concurrent_sweeps_nudge_each_due_handoff_once(runtime: Runtime, database_url: str) -> None:
    """Four sweepers (one runtime each, like four processes) race over 300 due handoffs."""
    ids = submit(runtime, 300)
    deadline = max(_claim_by(runtime, handoff_id) for handoff_id in ids)
    now = deadline + timedelta(seconds=1)
    others = [build_runtime(make_settings(database_url), config=runtime.config, run_migrations=False,
                            clock=lambda: now) for _ in range(4)]
    barrier = threading.Barrier(len(others))

    def sweep(other: Runtime) -> None:
        barrier.wait()
        Sweeper(other, batch=40).tick()

    threads = [threading.Thread(target=sweep, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for other in others:
        other.close()
    counts = sweep_events(runtime)
    assert set(counts.values()) == {1} and len(counts) == 300
    with runtime.db.read() as session:
        nudged = session.execute(select(func.count()).select_from(HandoffRow).where(col(HandoffRow.nudge_count) == 1))
        assert nudged.scalar_one() == 300


def _claim_by(runtime: Runtime, handoff_id: int) -> datetime:
    handoff = runtime.repo.get(handoff_id)
    assert handoff is not None and handoff.claim_by is not None
    return handoff.claim_by


def _claim_change(runtime: Runtime, handoff: Handoff) -> Any:
    return decide(handoff, Request(Action.claim), Actor("UANNA"), runtime.config, runtime.clock())


def schedule_of(runtime: Runtime, handoff_id: int) -> datetime | None:
    with runtime.db.read() as session:
        return session.execute(select(col(NudgeScheduleRow.next_nudge_at))
                               .where(col(NudgeScheduleRow.handoff_id) == handoff_id)).scalar_one_or_none()


def test_every_write_keeps_the_schedule_row_in_step(runtime: Runtime) -> None:
    [handoff_id] = submit(runtime, 1)
    created = runtime.repo.get(handoff_id)
    assert created is not None and schedule_of(runtime, handoff_id) == created.claim_by
    claimed = runtime.service.act(handoff_id, Request(Action.claim), Actor("UANNA")).handoff
    assert claimed.due_at is not None and schedule_of(runtime, handoff_id) == claimed.due_at
    runtime.service.act(handoff_id, Request(Action.close, outcome="done"), Actor("UANNA"))
    assert schedule_of(runtime, handoff_id) is None  # closed: nothing more to look at, no row
    reopened = runtime.service.act(handoff_id, Request(Action.reopen, reason="not done"), Actor("UMANAGER")).handoff
    assert reopened.claim_by is not None and schedule_of(runtime, handoff_id) == reopened.claim_by  # a row again


def test_the_migration_moves_each_next_look_into_the_schedule_and_back(runtime: Runtime) -> None:
    ids = submit(runtime, 2)
    runtime.service.act(ids[1], Request(Action.claim), Actor("UANNA"))
    runtime.service.act(ids[1], Request(Action.close, outcome="done"), Actor("UANNA"))
    looks = {handoff_id: schedule_of(runtime, handoff_id) for handoff_id in ids}
    url = runtime.settings.database_url
    command.downgrade(migrate.alembic_config(url), "0008")
    with runtime.db.read() as session:
        before = dict(session.execute(text("SELECT id, next_nudge_at FROM handoffs")).all())
    assert before[ids[1]] is None and before[ids[0]] is not None
    migrate.upgrade(url)
    assert {handoff_id: schedule_of(runtime, handoff_id) for handoff_id in ids} == looks
    if not runtime.db.is_sqlite:  # room in each page for a reminder's update beside the row (HOT)
        with runtime.db.read() as session:
            options = session.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'handoffs'")).scalar()
        assert options == ["fillfactor=80"]


def test_owners_beyond_one_ticks_lookups_wait_to_be_looked_up_rather_than_be_judged_in_the_teams_zone(
    database_url: str,
) -> None:
    """60 owners in Auckland, late at 10:00 UTC (a working hour of the team's zone, 23:00 theirs): one tick looks
    up 50 of them. The other 10 used to be judged in the team's zone, and reminded in their night."""
    config = parse_config({
        **CONFIG, "timezone": "UTC",
        "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
        "nudges": {**CONFIG["nudges"], "business_hours_only": True},
    })
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # a Monday
    owners = [f"UAUCK{i:03d}" for i in range(60)]
    with FakeSlack() as slack:
        slack.users.update({owner: {"tz": "Pacific/Auckland"} for owner in owners})
        runtime = build_runtime(make_settings(database_url), config=config, clock=clock)
        try:
            for owner in owners:
                runtime.service.submit(handoff_in(owner=owner), actor="producer")
            clock.now += timedelta(hours=1, minutes=5)  # every one past its 1h due time
            people = People(WebClient(token="xoxb-test", base_url=slack.url, retry_handlers=[]), config.zone)
            sweeper = Sweeper(runtime, people)
            assert (sweeper.tick().nudged, sum(map(people.knows, owners))) == (0, MAX_LOOKUPS_PER_WARM)
            clock.now += timedelta(seconds=1)
            assert (sweeper.tick().nudged, sum(map(people.knows, owners))) == (0, 60)
            clock.now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 22:00 in Auckland: still their night
            assert sweeper.tick().nudged == 0
            clock.now = datetime(2026, 3, 3, 20, 5, tzinfo=UTC)  # Wednesday 09:05 in Auckland
            assert sweeper.tick().nudged == 60
        finally:
            runtime.close()


class UsersInfoFailing(WebClient):
    """users.info for `failing` raises `error` the way slack_sdk's urllib client lets it through; others are in UTC."""

    def __init__(self, failing: str, error: Exception) -> None:
        super().__init__(token="xoxb-test")
        self.failing, self.error = failing, error

    def users_info(self, *, user: str, include_locale: bool | None = None, **kwargs: Any) -> SlackResponse:
        if user == self.failing:
            raise self.error
        return SlackResponse(client=self, http_verb="POST", api_url="users.info", req_args={},
                             data={"ok": True, "user": {"id": user, "tz": "UTC"}}, headers={}, status_code=200)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("error", [
    IncompleteRead(b'{"ok": true, "user": {', 478),  # an answer cut short (a proxy, a dropped connection)
    BadStatusLine("HTTP/1.1 2"),
    RuntimeError("an answer of a shape never seen"),
])
def test_one_persons_failed_lookup_does_not_stop_anyone_elses_reminder(database_url: str, error: Exception) -> None:
    """A users.info failure that is neither an OSError nor a ValueError escaped People.warm: every tick failed
    before nudging anyone, for ever. The person is judged in the team's zone, as after any failed lookup."""
    config = parse_config({
        **CONFIG, "timezone": "UTC",
        "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
        "nudges": {**CONFIG["nudges"], "business_hours_only": True},
    })
    clock = Clock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))  # a Monday, inside business hours
    runtime = build_runtime(make_settings(database_url), config=config, clock=clock)
    try:
        for owner in ("UANNA", "UBEN", None):  # Anna's lookup fails; Ben's works; the queue needs nobody's
            runtime.service.submit(handoff_in(owner=owner), actor="producer")
        clock.now += timedelta(hours=2)
        people = People(UsersInfoFailing("UANNA", error), config.zone)
        assert Sweeper(runtime, people).tick().nudged == 3
        assert people.knows("UANNA") and people.zone_of("UANNA") == config.zone
    finally:
        runtime.close()
