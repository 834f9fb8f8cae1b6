"""The daily digest (`digest: {channel, at}` in handoffs.yml): once a day per process group, at `at` in the
configured time zone, the stalled and escalated handoffs go to the digest channel.

Every process schedules the job; the first to claim the day in the database sends it (storage/digest.py).
A day with nothing to report still gets a short "all clear", so managers can tell the digest is alive.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger

from bot.blocks.digest import LINES, digest_message
from bot.runtime import Runtime
from handoffs.effects import post_message
from storage.digest import DigestStore

log = logging.getLogger("handoff_bot.digest")

DIGEST_JOB_ID = "handoff-digest"
CATCH_UP_JOB_ID = "handoff-digest-catch-up"
MISFIRE_GRACE = timedelta(hours=1)  # a process that was down or busy at `at` still sends within the hour


def send_digest(runtime: Runtime, now: datetime) -> bool:
    """Send the digest of `digest_day` unless some process has; True when this call did."""
    digest = runtime.config.digest
    if digest is None:
        return False
    day = digest_day(now, digest.at, runtime.config.zone)
    store = DigestStore(runtime.repo)
    message = digest_message(store.content(now=now, limit=LINES), day=day, now=now)
    effect = post_message(digest.channel, message["text"], message["blocks"])
    if not store.claim_day(day, now=now, effects=[effect]):
        log.info("digest for %s was already sent", day)
        return False
    runtime.notify()
    log.info("digest for %s written to the outbox for %s", day, digest.channel)
    return True


def add_digest_job(scheduler: BaseScheduler, runtime: Runtime) -> None:
    """Schedule the daily digest at `digest.at` in the configured zone; nothing when there is no `digest`."""
    digest = runtime.config.digest
    if digest is None:
        return
    trigger = DailyAt(digest.at, runtime.config.zone)

    def job() -> None:
        send_digest(runtime, runtime.clock())

    scheduler.add_job(
        job, trigger, id=DIGEST_JOB_ID, name="daily digest", coalesce=True, max_instances=1,
        misfire_grace_time=int(MISFIRE_GRACE.total_seconds()), replace_existing=True,
    )
    if _missed_within_grace(runtime.clock(), digest.at, runtime.config.zone):
        # The jobs live in memory: a process started just after `at` (a deploy, a restart) has no missed run to
        # catch up on, and the day would go without its digest. The day's claim keeps it to one send.
        scheduler.add_job(job, "date", id=CATCH_UP_JOB_ID, name="daily digest (started after its time)",
                          misfire_grace_time=int(MISFIRE_GRACE.total_seconds()), replace_existing=True)


class DailyAt(BaseTrigger):
    """Once a day at `at` in `zone`, the next time read off the local calendar. (APScheduler 3.11's CronTrigger
    skips the whole day after a spring clock change when `at` is in the day's first hour, and fires twice in an
    autumn repeated hour.) An `at` the clocks skip comes an hour later that day (02:30 on the night Berlin skips
    02:00-03:00 is 03:30); one they repeat comes at its first run only."""

    __slots__ = ("at", "zone")

    def __init__(self, at: time, zone: ZoneInfo) -> None:
        self.at = at
        self.zone = zone

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        after = previous_fire_time + timedelta(microseconds=1) if previous_fire_time is not None else now
        return _next_digest_time(after, self.at, self.zone).astimezone(UTC)

    def __str__(self) -> str:
        return f"daily at {self.at.isoformat()} ({self.zone.key})"


def digest_day(now: datetime, at: time, zone: ZoneInfo) -> date:
    """The day whose digest a run at `now` sends: today in `zone`, or, within the grace after the day before's
    `at`, that day (a late run at 00:10 of `at: 23:30` sends, and claims, the day it was due)."""
    last_at = _last_digest_time(now, at, zone)
    return last_at.date() if _since(last_at, now) <= MISFIRE_GRACE else now.astimezone(zone).date()


def _missed_within_grace(now: datetime, at: time, zone: ZoneInfo) -> bool:
    return timedelta(0) < _since(_last_digest_time(now, at, zone), now) <= MISFIRE_GRACE


def _last_digest_time(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The latest `at` (in `zone`) at or before `now`: today's, or before it comes the day before's."""
    today = now.astimezone(zone).date()
    today_at = datetime.combine(today, at, tzinfo=zone)
    if _since(today_at, now) >= timedelta(0):
        return today_at
    return datetime.combine(today - timedelta(days=1), at, tzinfo=zone)


def _next_digest_time(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first `at` (in `zone`) at or after `after`: today's, or once it has passed tomorrow's."""
    today = after.astimezone(zone).date()
    today_at = datetime.combine(today, at, tzinfo=zone)
    if _since(after, today_at) >= timedelta(0):
        return today_at
    return datetime.combine(today + timedelta(days=1), at, tzinfo=zone)


def _since(earlier: datetime, later: datetime) -> timedelta:
    # in UTC: two times in one ZoneInfo subtract (and compare) as wall clocks, an hour off around a clock change
    return later.astimezone(UTC) - earlier.astimezone(UTC)
