"""The nudge policy (SPEC §7): when a stalled handoff is nudged, whom, and when it escalates. Pure.

A handoff's deadline is its stall deadline (SPEC §5). The first nudge is due at the deadline, then one
every `repeat_every`, `max_nudges` in all; `repeat_every` after the last one it escalates, once. Never two
closer than `repeat_every` (a handoff found long overdue, a late first nudge after a snooze): the next one is
also at least `repeat_every` after the last (`last_nudged_at`). A new phase (claimed, released, reassigned,
reopened, a new due time) starts the count again. A snooze holds everything back until it ends. With
`business_hours_only`, the repeats count business time and nothing goes out outside business hours in the
recipient's own time zone: it waits for the next opening, also when the sweep comes late.

The sweep keeps, per handoff, the earliest moment this policy may act (`earliest_look`, which needs no
time zone and is never later than the real moment), and asks `decide` with the recipient's zone once
that moment has come: the answer is a nudge, an escalation, or "wait until" the exact moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from handoffs.config import BusinessHours, HandoffConfig
from handoffs.model import Handoff, Status
from handoffs.sla import add_business_time, business_span, next_business_moment

DEFAULT_BUSINESS_HOURS = BusinessHours()
SNOOZE_DAY_STARTS_AT = timedelta(hours=4)  # someone still up at 00:30 means this morning by "tomorrow"


class Step(StrEnum):
    nudge = "nudge"
    escalate = "escalate"
    wait = "wait"
    done = "done"


class Lateness(StrEnum):
    """Why a handoff is late (the `reason` of `nudged` / `escalated` events)."""

    unclaimed = "unclaimed"  # open past its claim deadline
    awaiting_approval = "awaiting_approval"  # claimed, still waiting for approval past its claim deadline
    overdue = "overdue"  # claimed or approved past its due time


class StallReason(StrEnum):
    """What someone answers a reminder with (one click); counted in the figures."""

    blocked = "blocked"
    need_info = "need info"
    wrong_owner = "wrong owner"


@dataclass(frozen=True)
class Decision:
    step: Step
    look_again_at: datetime | None = None  # when the policy may act next (None: nothing more to do)
    reason: Lateness | None = None
    late_by: timedelta = timedelta(0)
    nudge_number: int = 0  # 1-based, for a nudge
    recipients: tuple[str, ...] = ()  # users to DM; empty for a nudge of the queue in the card's thread
    escalate_to: tuple[str, ...] = ()  # channels or users an escalation goes to

    @property
    def in_card_thread(self) -> bool:
        """A nudge of the queue: nobody owns the handoff, so the card's thread is where it is seen."""
        return self.step is Step.nudge and not self.recipients


def lateness(handoff: Handoff) -> Lateness | None:
    deadline = handoff.stall_deadline()
    if deadline is None:
        return None
    if handoff.status is Status.open:
        return Lateness.unclaimed
    if handoff.awaiting_approval and handoff.claim_by is not None and handoff.claim_by <= deadline:
        return Lateness.awaiting_approval
    return Lateness.overdue


def _business_hours(config: HandoffConfig) -> BusinessHours | None:
    if not config.nudges.business_hours_only:
        return None
    return config.business_hours or DEFAULT_BUSINESS_HOURS


def _finished(handoff: Handoff, config: HandoffConfig, nudge_count: int) -> bool:
    if handoff.is_terminal or handoff.stall_deadline() is None:
        return True
    return nudge_count >= config.nudges.max_nudges and handoff.escalated_at is not None


def scheduled_at(handoff: Handoff, config: HandoffConfig, zone: ZoneInfo) -> datetime | None:
    """The exact moment of the next nudge or escalation, business hours counted in `zone`; None when done."""
    if _finished(handoff, config, handoff.nudge_count):
        return None
    deadline = handoff.stall_deadline()
    assert deadline is not None
    hours, repeat = _business_hours(config), config.nudges.repeat_every
    due = add_business_time(deadline, repeat, hours, zone, times=handoff.nudge_count)
    if handoff.last_nudged_at is not None:
        due = max(due, add_business_time(handoff.last_nudged_at, repeat, hours, zone))
    if handoff.snoozed_until is not None:
        due = max(due, handoff.snoozed_until)
    return next_business_moment(due, hours, zone) if hours else due


def earliest_look(handoff: Handoff, config: HandoffConfig) -> datetime | None:
    """A lower bound of `scheduled_at` in every time zone: the calendar schedule, ignoring business hours.

    A span of business time takes at least as long on the calendar, so a sweep that looks at this moment is
    never late.
    """
    return _earliest_look_after(handoff, config, handoff.nudge_count, handoff.last_nudged_at)


def _earliest_look_after(
    handoff: Handoff, config: HandoffConfig, nudge_count: int, last_nudged_at: datetime | None,
) -> datetime | None:
    """`earliest_look` once `nudge_count` reminders have gone out, the last at `last_nudged_at` (no copy of the
    handoff: the sweep asks this for every reminder it sends, and copying a Handoff costs more than the whole
    decision)."""
    if _finished(handoff, config, nudge_count):
        return None
    deadline = handoff.stall_deadline()
    assert deadline is not None
    hours = _business_hours(config)
    repeat = business_span(config.nudges.repeat_every, hours) if hours else config.nudges.repeat_every
    due = deadline + repeat * nudge_count
    if last_nudged_at is not None:
        due = max(due, last_nudged_at + repeat)
    return max(due, handoff.snoozed_until) if handoff.snoozed_until is not None else due


def escalation_targets(handoff: Handoff, config: HandoffConfig) -> tuple[str, ...]:
    """The route's `escalate_to`, else the global one, else the managers (by DM)."""
    route = config.route_named(handoff.route)
    target = (route.escalate_to if route else None) or config.nudges.escalate_to
    return (target,) if target else tuple(config.managers)


def nudge_recipients(handoff: Handoff) -> tuple[str, ...]:
    """The owner by DM, and the approvers too while it waits for them; nobody (the queue) while unclaimed."""
    if handoff.status is Status.open or handoff.owner is None:
        return ()
    people = [handoff.owner]
    if lateness(handoff) is Lateness.awaiting_approval:
        people += [approver for approver in handoff.approvers if approver != handoff.owner]
    return tuple(people)


def decide(handoff: Handoff, config: HandoffConfig, now: datetime, zone: ZoneInfo) -> Decision:
    """What the sweep does about `handoff` at `now`; `zone` is the owner's time zone (the team's without one)."""
    due = scheduled_at(handoff, config, zone)
    if due is None:
        return Decision(Step.done)
    if due > now:
        return Decision(Step.wait, look_again_at=due)
    hours = _business_hours(config)
    if hours is not None and (opening := next_business_moment(now, hours, zone)) > now:
        return Decision(Step.wait, look_again_at=opening)  # due while closed (a sweep that came late): the morning
    deadline = handoff.stall_deadline()
    assert deadline is not None
    reason, late_by = lateness(handoff), max(now - deadline, timedelta(0))
    if handoff.nudge_count < config.nudges.max_nudges:
        number = handoff.nudge_count + 1
        look_again_at = _earliest_look_after(handoff, config, number, now)
        return Decision(Step.nudge, look_again_at, reason, late_by, number, recipients=nudge_recipients(handoff))
    return Decision(Step.escalate, None, reason, late_by, escalate_to=escalation_targets(handoff, config))


def snooze_until_tomorrow(now: datetime, config: HandoffConfig, zone: ZoneInfo) -> datetime:
    """The next day's opening time (business hours' start, or 09:00) in `zone`, skipping closed days. Before
    SNOOZE_DAY_STARTS_AT the day is still the one before: pressed at 00:30 on Tuesday, tomorrow is Tuesday."""
    hours = config.business_hours or DEFAULT_BUSINESS_HOURS
    tomorrow = (now - SNOOZE_DAY_STARTS_AT).astimezone(zone).date() + timedelta(days=1)
    opening = _first_opening_from(tomorrow, hours, zone)
    if opening <= now:  # business hours that open before SNOOZE_DAY_STARTS_AT: that opening has passed
        opening = _first_opening_from(tomorrow + timedelta(days=1), hours, zone)
    return opening.astimezone(now.tzinfo)


def _first_opening_from(day: date, hours: BusinessHours, zone: ZoneInfo) -> datetime:
    return next_business_moment(datetime.combine(day, time(0), tzinfo=zone), hours, zone)
