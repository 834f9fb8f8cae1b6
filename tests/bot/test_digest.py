"""The daily digest: its message, once a day per process group (day in the configured zone), and its job."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import update
from sqlmodel import col, select

from bot.blocks.digest import LINES, digest_message
from bot.digest import CATCH_UP_JOB_ID, DIGEST_JOB_ID, add_digest_job, send_digest
from bot.runtime import Runtime, build_runtime
from bot.server import build_bot
from handoffs.config import HandoffConfig, parse_config
from handoffs.effects import POST_MESSAGE
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import HandoffIn, Status
from storage.digest import DigestContent
from storage.tables import DigestRunRow, HandoffRow, OutboxRow
from tests.bot.slack.e2e import wait_until
from tests.conftest import DEFAULT_CONFIG, make_settings
from tests.factories import NOW, make_handoff, payload
from tests.fakes.slack_api import FakeSlack

BERLIN = ZoneInfo("Europe/Berlin")
DIGEST_CHANNEL = "CLEADS"
HOSTILE_TITLE = "<!channel> wire money via <https://evil.test|bank.com> @here <@UBOSS>"
# NOW is Wednesday 2025-03-12 10:00 UTC; the digest runs at 09:00 in Berlin, 08:00 UTC, the next morning
NEXT_MORNING = datetime(2025, 3, 13, 8, 0, tzinfo=UTC)
LINE_REF = re.compile(r"^\S+ \*(?:<[^|>]*\|)?(H-\d+)>?\*")  # "🔴 *<card url|H-42>* title…"


def digest_config(**overrides: Any) -> HandoffConfig:
    return parse_config({**DEFAULT_CONFIG, "timezone": "Europe/Berlin",
                         "digest": {"channel": DIGEST_CHANNEL, "at": "09:00"}, **overrides})


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def digest_runtime(database_url: str, clock: Clock) -> Iterator[Runtime]:
    runtime = build_runtime(make_settings(database_url), config=digest_config(), clock=clock)
    yield runtime
    runtime.close()


def submit(runtime: Runtime, **fields: Any) -> int:
    return runtime.service.submit(HandoffIn.model_validate(payload(**fields)), actor="producer").handoff.id


def mark_escalated(runtime: Runtime, handoff_id: int, at: datetime) -> None:
    with runtime.db.write() as session:
        session.execute(update(HandoffRow).where(col(HandoffRow.id) == handoff_id).values(escalated_at=at))


def digests(runtime: Runtime) -> list[OutboxRow]:
    with runtime.db.read() as session:
        return list(session.exec(select(OutboxRow).where(OutboxRow.kind == POST_MESSAGE).order_by(col(OutboxRow.id))))


def days_claimed(runtime: Runtime) -> list[str]:
    with runtime.db.read() as session:
        return list(session.exec(select(DigestRunRow.day).order_by(col(DigestRunRow.day))))


def refs_in(blocks: list[dict[str, Any]]) -> list[str]:
    """The handoff refs of the listed lines, in order."""
    texts = [block["text"]["text"] for block in blocks if block["type"] == "section"]
    return [match.group(1) for text in texts if (match := LINE_REF.search(text))]


def assert_inert(text: str) -> None:
    for live in ("<!channel>", "<https://evil", "<@UBOSS>", "@here"):
        assert live not in text, text


# ---------------------------------------------------------------- the message (pure)


def test_the_message_counts_then_lists_escalated_and_stalled_with_a_cap() -> None:
    stalled = [make_handoff(id=i, status=Status.open, owner=None, queue="CHANDOFFS",
                            claim_by=NOW - timedelta(hours=30 - i)) for i in range(1, LINES + 1)]
    escalated = [make_handoff(id=99, title=HOSTILE_TITLE, due_at=NOW - timedelta(days=2), escalated_at=NOW)]
    content = DigestContent(stalled=stalled, stalled_total=LINES + 5, escalated=escalated, escalated_total=1)
    message = digest_message(content, day=date(2025, 3, 12), now=NOW)

    blocks = message["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Handoff digest · Wed 12 Mar 2025",
                                                    "emoji": True}}
    assert "*20* stalled · *1* escalated" in blocks[1]["text"]["text"]
    assert refs_in(blocks) == ["H-99", *[f"H-{i}" for i in range(1, LINES + 1)]]
    assert "2d late" in json.dumps(blocks[3], ensure_ascii=False)
    assert "…and 5 more; `/handoff stalled` lists them all" in json.dumps(blocks[-1], ensure_ascii=False)
    assert len(blocks) <= 50
    assert message["text"] == "Handoff digest · Wed 12 Mar 2025: 20 stalled, 1 escalated"
    assert_inert(json.dumps(message, ensure_ascii=False))


def test_an_empty_day_says_all_clear() -> None:
    message = digest_message(DigestContent([], 0, [], 0), day=date(2025, 3, 12), now=NOW)
    assert "All clear" in message["blocks"][1]["text"]["text"]
    assert len(message["blocks"]) == 2 and message["text"].endswith(": all clear")


# ---------------------------------------------------------------- once a day per process group


def test_send_digest_posts_the_stalled_and_escalated_once_a_day(digest_runtime: Runtime, clock: Clock) -> None:
    late = submit(digest_runtime)  # open: claim by 14:00 UTC
    later = submit(digest_runtime, urgency="urgent")  # open: claim by 10:15 UTC, the most overdue
    hostile = submit(digest_runtime, title=HOSTILE_TITLE)
    submit(digest_runtime, owner="UANNA")  # claimed, due in 3 days: not stalled
    finished = submit(digest_runtime, owner="UANNA")
    mark_escalated(digest_runtime, hostile, NOW + timedelta(hours=6))
    mark_escalated(digest_runtime, finished, NOW + timedelta(hours=6))
    digest_runtime.service.act(finished, Request(Action.close, outcome="done"), Actor("UANNA"))

    clock.now = NEXT_MORNING
    assert send_digest(digest_runtime, clock.now) is True
    [row] = digests(digest_runtime)
    assert row.target == DIGEST_CHANNEL and row.handoff_id is None
    blocks = row.payload["blocks"]
    assert refs_in(blocks) == [f"H-{hostile}", f"H-{later}", f"H-{late}", f"H-{hostile}"]
    assert "*3* stalled · *1* escalated" in blocks[1]["text"]["text"]
    assert row.payload["text"] == "Handoff digest · Thu 13 Mar 2025: 3 stalled, 1 escalated"
    assert_inert(json.dumps(row.payload, ensure_ascii=False))
    assert days_claimed(digest_runtime) == ["2025-03-13"]

    assert send_digest(digest_runtime, NEXT_MORNING + timedelta(hours=14)) is False  # 23:00 in Berlin
    assert len(digests(digest_runtime)) == 1

    assert send_digest(digest_runtime, NEXT_MORNING + timedelta(days=1)) is True
    assert len(digests(digest_runtime)) == 2
    assert days_claimed(digest_runtime) == ["2025-03-13", "2025-03-14"]


def test_a_second_process_on_the_same_database_sends_nothing(
    digest_runtime: Runtime, database_url: str, clock: Clock
) -> None:
    submit(digest_runtime)
    other = build_runtime(make_settings(database_url), config=digest_config(), clock=clock, run_migrations=False)
    try:
        assert send_digest(other, NEXT_MORNING) is True
        assert send_digest(digest_runtime, NEXT_MORNING + timedelta(minutes=1)) is False
    finally:
        other.close()
    assert len(digests(digest_runtime)) == 1


def test_the_day_is_the_configured_zones_day(database_url: str, clock: Clock) -> None:
    runtime = build_runtime(make_settings(database_url), config=digest_config(timezone="Pacific/Auckland"),
                            clock=clock)
    try:
        evening_utc = datetime(2025, 3, 12, 20, 0, tzinfo=UTC)  # 09:00 on Thursday the 13th in Auckland
        assert send_digest(runtime, evening_utc) is True
        assert send_digest(runtime, evening_utc + timedelta(hours=14, minutes=30)) is False  # 23:30 there
        assert send_digest(runtime, evening_utc + timedelta(hours=15, minutes=30)) is True  # 00:30 on the 14th
        assert days_claimed(runtime) == ["2025-03-13", "2025-03-14"]
        assert "All clear" in digests(runtime)[0].payload["blocks"][1]["text"]["text"]  # an empty day is sent
    finally:
        runtime.close()


def test_without_a_digest_config_nothing_is_sent(runtime: Runtime) -> None:
    assert runtime.config.digest is None
    assert send_digest(runtime, NEXT_MORNING) is False
    assert days_claimed(runtime) == [] and digests(runtime) == []


# ---------------------------------------------------------------- the job


def test_the_job_runs_daily_at_the_configured_time_in_the_configured_zone(
    digest_runtime: Runtime, clock: Clock
) -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    add_digest_job(scheduler, digest_runtime)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job(DIGEST_JOB_ID)
        assert job is not None
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 3600)
        fire = job.next_run_time.astimezone(BERLIN)
        assert fire.time() == time(9, 0) and fire.tzinfo == BERLIN
        assert timedelta(0) < fire - datetime.now(UTC) <= timedelta(days=1)
        # across the switch to summer time (30 March 2025) it stays 09:00 in Berlin: 07:00 UTC
        after_switch = job.trigger.get_next_fire_time(None, datetime(2025, 3, 31, 6, 0, tzinfo=UTC))
        assert after_switch == datetime(2025, 3, 31, 7, 0, tzinfo=UTC)

        clock.now = NEXT_MORNING
        job.func()  # what the scheduler runs: send_digest with the runtime's clock
        assert days_claimed(digest_runtime) == ["2025-03-13"]
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(("started", "catches_up"), [
    (datetime(2025, 3, 13, 9, 20, tzinfo=BERLIN), True),  # 20 minutes after `at`: within the grace
    (datetime(2025, 3, 13, 10, 30, tzinfo=BERLIN), False),  # past the grace: tomorrow's
    (datetime(2025, 3, 13, 8, 50, tzinfo=BERLIN), False),  # before `at`: the daily job sends it
])
def test_a_process_started_just_after_the_digest_time_still_sends_it(
    digest_runtime: Runtime, clock: Clock, started: datetime, catches_up: bool,
) -> None:
    """The jobs live in memory, so a restart just after `at` had no missed run to catch up on: no digest that day."""
    clock.now = started.astimezone(UTC)
    with digest_scheduled(digest_runtime) as scheduler:
        assert_caught_up(digest_runtime, scheduler, "2025-03-13" if catches_up else None)
        assert scheduler.get_job(DIGEST_JOB_ID) is not None  # the daily job stays


@contextlib.contextmanager
def digest_scheduled(runtime: Runtime) -> Iterator[BackgroundScheduler]:
    """A scheduler with the digest's jobs, as `serve` starts it, running for the block."""
    scheduler = BackgroundScheduler(timezone=UTC)
    add_digest_job(scheduler, runtime)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def assert_caught_up(runtime: Runtime, scheduler: BackgroundScheduler, day: str | None) -> None:
    """The start's catch-up sent `day`'s digest, or (None) there was nothing to catch up on."""
    if day is not None:
        wait_until(lambda: days_claimed(runtime) == [day], what=f"the digest of {day}")
    else:
        assert scheduler.get_job(CATCH_UP_JOB_ID) is None and days_claimed(runtime) == []


@pytest.mark.parametrize(("started", "catches_up"), [
    (datetime(2025, 3, 14, 0, 10, tzinfo=BERLIN), True),  # 40 minutes after the 13th's 23:30, the next day
    (datetime(2025, 3, 14, 0, 40, tzinfo=BERLIN), False),  # 70 minutes after: past the grace
])
def test_a_digest_due_just_before_midnight_is_sent_by_a_process_started_just_after(
    database_url: str, started: datetime, catches_up: bool,
) -> None:
    """The catch-up only looked at today's `at`: a restart at 00:10 never sent the 23:30 digest of the day before."""
    config = digest_config(digest={"channel": DIGEST_CHANNEL, "at": "23:30"})
    runtime = build_runtime(make_settings(database_url), config=config, clock=Clock(started.astimezone(UTC)))
    try:
        with digest_scheduled(runtime) as scheduler:
            assert_caught_up(runtime, scheduler, "2025-03-13" if catches_up else None)
    finally:
        runtime.close()


def test_a_late_run_after_midnight_sends_and_claims_the_day_it_was_due(database_url: str, clock: Clock) -> None:
    """A run of the 23:30 digest that comes late, after midnight (the scheduler's misfire grace, the catch-up),
    claimed the new day: the day before went without its digest and the new day's was used up."""
    config = digest_config(digest={"channel": DIGEST_CHANNEL, "at": "23:30"})
    runtime = build_runtime(make_settings(database_url), config=config, clock=clock)
    try:
        assert send_digest(runtime, datetime(2025, 3, 14, 0, 5, tzinfo=BERLIN)) is True
        assert days_claimed(runtime) == ["2025-03-13"]
        assert digests(runtime)[0].payload["text"].startswith("Handoff digest · Thu 13 Mar 2025")
        assert send_digest(runtime, datetime(2025, 3, 14, 0, 20, tzinfo=BERLIN)) is False  # the 13th's, again
        assert send_digest(runtime, datetime(2025, 3, 14, 23, 30, tzinfo=BERLIN)) is True  # the 14th's, on time
        assert days_claimed(runtime) == ["2025-03-13", "2025-03-14"]
    finally:
        runtime.close()


def fire_times(trigger: Any, start: datetime, count: int) -> list[datetime]:
    """`count` fire times of `trigger` from `start`, asked the way APScheduler asks after each run."""
    fires = [trigger.get_next_fire_time(None, start)]
    while len(fires) < count:
        fires.append(trigger.get_next_fire_time(fires[-1], fires[-1] + timedelta(milliseconds=5)))
    return fires


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("zone", "at", "first_day", "skipped_at"), [
    ("Europe/Berlin", "00:00", date(2025, 3, 29), None),  # summer time from Sunday 30 March, 02:00
    ("Europe/Berlin", "00:30", date(2025, 3, 29), None),
    ("America/New_York", "00:00", date(2025, 3, 8), None),  # Sunday 9 March, 02:00
    ("America/Santiago", "00:00", date(2025, 9, 5), date(2025, 9, 7)),  # midnight of Sunday 7 September is skipped
    ("Africa/Cairo", "00:00", date(2025, 4, 23), date(2025, 4, 25)),  # midnight of Friday 25 April is skipped
    ("Europe/Berlin", "02:30", date(2025, 3, 28), date(2025, 3, 30)),
])
def test_the_digest_is_sent_every_day_across_the_spring_clock_change(
    database_url: str, zone: str, at: str, first_day: date, skipped_at: date | None,
) -> None:
    """APScheduler's CronTrigger skipped the whole day after the change when `at` was in the day's first hour:
    no digest that day. An `at` the clocks skip comes an hour later that day (Santiago: 01:00 on the 7th)."""
    tz = ZoneInfo(zone)
    config = digest_config(timezone=zone, digest={"channel": DIGEST_CHANNEL, "at": at})
    runtime = build_runtime(make_settings(database_url), config=config, clock=Clock(NOW))
    scheduler = BackgroundScheduler(timezone=tz)
    try:
        add_digest_job(scheduler, runtime)
        job = scheduler.get_job(DIGEST_JOB_ID)
        assert job is not None
        days = [first_day + timedelta(days=offset) for offset in range(5)]
        start = datetime.combine(first_day - timedelta(days=1), time(12), tzinfo=tz)
        fires = fire_times(job.trigger, start, 5)
        wanted = time.fromisoformat(at)
        assert [fire.astimezone(tz).date() for fire in fires] == days
        assert [fire.astimezone(tz).time() == wanted for fire in fires] == [day != skipped_at for day in days]
        for fire in fires:
            runtime.clock = Clock(fire)
            job.func()
        assert days_claimed(runtime) == [day.isoformat() for day in days]
    finally:
        runtime.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_digest_due_in_the_repeated_hour_of_autumn_fires_once_that_day(database_url: str, clock: Clock) -> None:
    config = digest_config(digest={"channel": DIGEST_CHANNEL, "at": "02:30"})
    runtime = build_runtime(make_settings(database_url), config=config, clock=clock)
    scheduler = BackgroundScheduler(timezone=BERLIN)
    try:
        add_digest_job(scheduler, runtime)
        job = scheduler.get_job(DIGEST_JOB_ID)
        assert job is not None
        fires = fire_times(job.trigger, datetime(2025, 10, 25, 12, 0, tzinfo=BERLIN), 3)
        assert [fire.astimezone(UTC) for fire in fires] == [
            datetime(2025, 10, 26, 0, 30, tzinfo=UTC),  # the first 02:30 (CEST) of Sunday 26 October, only
            datetime(2025, 10, 27, 1, 30, tzinfo=UTC), datetime(2025, 10, 28, 1, 30, tzinfo=UTC)]
    finally:
        runtime.close()


def test_no_job_without_a_digest_config(runtime: Runtime) -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    add_digest_job(scheduler, runtime)
    assert scheduler.get_jobs() == []


# ---------------------------------------------------------------- end to end: through the outbox to Slack


def test_the_digest_reaches_the_digest_channel(database_url: str) -> None:
    with FakeSlack() as slack:
        far_from_now = (datetime.now(BERLIN) + timedelta(hours=12)).strftime("%H:00")  # the job must not fire too
        config = digest_config(digest={"channel": DIGEST_CHANNEL, "at": far_from_now})
        runtime = build_runtime(make_settings(database_url, slack_api_url=slack.url), config=config)
        bot = build_bot(runtime)  # the outbox sender, and the runtime's notify
        bot.start()
        try:
            now = runtime.clock()
            overdue = (now - timedelta(hours=2)).isoformat()
            ref = f"H-{submit(runtime, title=HOSTILE_TITLE, owner='UANNA', due_at=overdue)}"
            heading = f"Handoff digest · {now.astimezone(BERLIN).strftime('%a %d %b %Y')}"

            assert send_digest(runtime, now) is True
            [posted] = wait_until(lambda: [c for c in slack.posted_cards(DIGEST_CHANNEL)
                                           if c.params["text"].startswith(heading)], what="the digest in #leads")
        finally:
            bot.stop()
            runtime.close()
    assert refs_in(posted.params["blocks"]) == [ref]
    assert_inert(json.dumps(posted.params, ensure_ascii=False))
