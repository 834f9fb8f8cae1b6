"""Deadlines: SLA per urgency, counted in business hours when the configuration has them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from handoffs.config import WEEKDAY_INDEX, BusinessHours, HandoffConfig, Route, SlaRule
from handoffs.durations import WrittenInHours, WrittenInWeeks
from handoffs.model import Urgency

_MAX_DAYS_SCANNED = 3660


def _is_business_day(moment: datetime, hours: BusinessHours) -> bool:
    return moment.weekday() in {WEEKDAY_INDEX[day] for day in hours.days}


def _day_bounds(local: datetime, hours: BusinessHours) -> tuple[datetime, datetime]:
    """The opening and closing instants (in UTC) of `local`'s day in its zone. Where a clock change repeats one of
    those times, the first run opens and the second closes: the repeated hour is open."""
    opening = local.replace(hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0, fold=0)
    closing = local.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0, fold=1)
    return opening.astimezone(UTC), closing.astimezone(UTC)


def next_business_moment(moment: datetime, hours: BusinessHours, zone: ZoneInfo) -> datetime:
    """`moment` itself when it falls inside business hours, else the next opening time."""
    local = moment.astimezone(zone)
    for _ in range(_MAX_DAYS_SCANNED):
        opening, closing = _day_bounds(local, hours)
        if _is_business_day(local, hours) and moment < closing:
            return max(moment, opening).astimezone(moment.tzinfo)
        local = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    raise ValueError("business hours never open")


def add_business_time(
    start: datetime, span: timedelta, hours: BusinessHours | None, zone: ZoneInfo, *, times: int = 1
) -> datetime:
    """`start + span * times`, where only time inside business hours counts when `hours` is set.

    A span of whole days counts business days (`3d` = three full business days), so that an SLA
    written in days means what people mean by it; other spans count business hours (`4h`, and `24h`). `times`
    repeats the span as written: two repeats of `12h` are 24 business hours, not one business day.
    """
    if hours is None:
        return start + span * times
    remaining = business_span(span, hours) * times
    # in UTC: a sum or difference of two times in one ZoneInfo is a wall-clock one, an hour off across a clock change
    cursor = next_business_moment(start, hours, zone).astimezone(UTC)
    for _ in range(_MAX_DAYS_SCANNED):
        _, closing = _day_bounds(cursor.astimezone(zone), hours)
        available = closing - cursor
        if remaining <= available:
            return (cursor + remaining).astimezone(start.tzinfo)
        remaining -= available
        cursor = next_business_moment(closing + timedelta(seconds=1), hours, zone)
    raise ValueError("deadline too far away")


def business_span(span: timedelta, hours: BusinessHours) -> timedelta:
    """How much business time `span` stands for: whole days are that many business days, weeks (`1w`) the business
    days of that many weeks, the rest (and anything written in hours, such as `24h`) as written. Never more than
    `span` itself, so that `start + business_span(span)` is never later than the business time added to `start`."""
    if isinstance(span, WrittenInHours) or span.total_seconds() % 86400:
        return span
    business_days = span.days // 7 * len(set(hours.days)) if isinstance(span, WrittenInWeeks) else span.days
    return business_days * _business_day_length(hours)


def _business_day_length(hours: BusinessHours) -> timedelta:
    opening = timedelta(hours=hours.start.hour, minutes=hours.start.minute)
    closing = timedelta(hours=hours.end.hour, minutes=hours.end.minute)
    return closing - opening


def sla_rule(config: HandoffConfig, route: Route | None, urgency: Urgency) -> SlaRule:
    if route is not None and route.sla and urgency in route.sla:
        return route.sla[urgency]
    return config.sla[urgency]


def claim_deadline(config: HandoffConfig, route: Route | None, urgency: Urgency, now: datetime) -> datetime:
    rule = sla_rule(config, route, urgency)
    return add_business_time(now, rule.claim, config.business_hours, config.zone)


def resolve_deadline(config: HandoffConfig, route: Route | None, urgency: Urgency, now: datetime) -> datetime:
    rule = sla_rule(config, route, urgency)
    return add_business_time(now, rule.resolve, config.business_hours, config.zone)
