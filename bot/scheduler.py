"""The background jobs of one `serve` process (APScheduler): the SLA sweep, and the daily digest."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from bot.digest import add_digest_job
from bot.runtime import Runtime
from bot.sweep import Sweeper


def build_scheduler(runtime: Runtime, sweeper: Sweeper) -> BackgroundScheduler:
    """A sweep every `nudges.check_every` (one at a time, a late one skipped rather than run twice), and the
    daily digest when the configuration asks for one."""
    scheduler = BackgroundScheduler(timezone=runtime.config.zone)
    scheduler.add_job(
        sweeper.run_safely, "interval", seconds=runtime.config.nudges.check_every.total_seconds(),
        id="sla-sweep", max_instances=1, coalesce=True, misfire_grace_time=None,
    )
    add_digest_job(scheduler, runtime)
    return scheduler
