from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoffs.config import BusinessHours, HandoffConfig, parse_config
from handoffs.durations import parse_duration
from handoffs.model import Urgency
from handoffs.sla import add_business_time, claim_deadline, next_business_moment, resolve_deadline

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = BusinessHours.model_validate({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"})


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_a_deadline_spanning_a_weekend_resumes_on_monday_morning() -> None:
    friday_5pm = berlin(2025, 3, 14, 17, 0).astimezone(UTC)
    due = add_business_time(friday_5pm, timedelta(hours=4), HOURS, BERLIN)
    # one hour on Friday (17-18), three on Monday (9-12)
    assert due == berlin(2025, 3, 17, 12, 0)
    assert due.tzinfo == UTC  # answered in the caller's time zone


def test_a_deadline_spanning_a_night_skips_the_closed_hours() -> None:
    tuesday_4pm = berlin(2025, 3, 11, 16, 0)
    assert add_business_time(tuesday_4pm, timedelta(hours=4), HOURS, BERLIN) == berlin(2025, 3, 12, 11, 0)


def test_a_weekend_with_a_clock_change_counts_wall_clock_business_hours() -> None:
    # Berlin moves to summer time on Sunday 30 March 2025: Monday opens at 09:00 CEST (07:00 UTC)
    friday_5pm = berlin(2025, 3, 28, 17, 0)
    due = add_business_time(friday_5pm, timedelta(hours=4), HOURS, BERLIN)
    assert due == berlin(2025, 3, 31, 12, 0)
    assert due.astimezone(UTC) == datetime(2025, 3, 31, 10, 0, tzinfo=UTC)


def test_starting_on_a_weekend_or_before_opening_counts_from_the_next_opening() -> None:
    saturday = berlin(2025, 3, 15, 11, 30)
    assert add_business_time(saturday, timedelta(minutes=30), HOURS, BERLIN) == berlin(2025, 3, 17, 9, 30)
    early_tuesday = berlin(2025, 3, 11, 6, 45)
    assert add_business_time(early_tuesday, timedelta(hours=1), HOURS, BERLIN) == berlin(2025, 3, 11, 10, 0)
    late_tuesday = berlin(2025, 3, 11, 21, 0)
    assert add_business_time(late_tuesday, timedelta(hours=1), HOURS, BERLIN) == berlin(2025, 3, 12, 10, 0)


def test_a_span_that_ends_exactly_at_closing_time_stays_on_that_day() -> None:
    assert add_business_time(berlin(2025, 3, 11, 9, 0), timedelta(hours=9), HOURS, BERLIN) == berlin(2025, 3, 11, 18)


def test_a_span_of_several_business_days_skips_every_night_and_the_weekend() -> None:
    # 20 business hours from Thursday 10:00: Thu 8h, Fri 9h, Mon 3h
    assert add_business_time(berlin(2025, 3, 13, 10, 0), timedelta(hours=20), HOURS, BERLIN) == berlin(2025, 3, 17, 12)


def test_next_business_moment() -> None:
    inside = berlin(2025, 3, 12, 11, 0)
    assert next_business_moment(inside, HOURS, BERLIN) == inside
    assert next_business_moment(berlin(2025, 3, 14, 18, 0), HOURS, BERLIN) == berlin(2025, 3, 17, 9, 0)


def test_without_business_hours_time_runs_around_the_clock() -> None:
    friday_5pm = berlin(2025, 3, 14, 17, 0)
    assert add_business_time(friday_5pm, timedelta(hours=4), None, BERLIN) == berlin(2025, 3, 14, 21, 0)


@pytest.fixture
def berlin_config() -> HandoffConfig:
    return parse_config({
        "timezone": "Europe/Berlin",
        "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"},
        "sla": {"urgent": {"claim": "15m", "resolve": "4h"}},
        "routes": [
            {"name": "vip", "when": {"kind": "lead"}, "channel": "CVIP",
             "sla": {"urgent": {"claim": "5m", "resolve": "1h"}}},
            {"name": "default", "channel": "CHANDOFFS"},
        ],
    })


def test_claim_and_resolve_deadlines_use_the_route_sla_before_the_global_one(berlin_config: HandoffConfig) -> None:
    friday = berlin(2025, 3, 14, 17, 50)
    vip = berlin_config.route_named("vip")
    assert claim_deadline(berlin_config, vip, Urgency.urgent, friday) == berlin(2025, 3, 14, 17, 55)
    assert resolve_deadline(berlin_config, vip, Urgency.urgent, friday) == berlin(2025, 3, 17, 9, 50)
    assert claim_deadline(berlin_config, None, Urgency.urgent, friday) == berlin(2025, 3, 17, 9, 5)
    # urgencies the file does not set keep the built-in defaults (normal: claim 4h)
    assert claim_deadline(berlin_config, None, Urgency.normal, friday) == berlin(2025, 3, 17, 12, 50)


def test_a_span_in_whole_days_counts_business_days() -> None:
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from handoffs.config import BusinessHours
    from handoffs.sla import add_business_time

    berlin = ZoneInfo("Europe/Berlin")
    hours = BusinessHours(start=time(9), end=time(18))
    friday_noon = datetime(2026, 11, 20, 12, 0, tzinfo=berlin)
    # 3 business days from Friday noon: Mon, Tue, Wed -> Wednesday noon (not 72 business hours later).
    wednesday_noon = datetime(2026, 11, 25, 12, 0, tzinfo=berlin)
    assert add_business_time(friday_noon, timedelta(days=3), hours, berlin) == wednesday_noon
    # Hours still count business hours: 8h from Friday 12:00 -> Monday 11:00.
    monday_eleven = datetime(2026, 11, 23, 11, 0, tzinfo=berlin)
    assert add_business_time(friday_noon, timedelta(hours=8), hours, berlin) == monday_eleven


def test_an_sla_written_in_hours_counts_business_hours_even_when_it_is_whole_days() -> None:
    """`24h` was stored as one day and counted as one business day: an hour more of SLA than `23h` gave a
    deadline 29 calendar hours earlier."""
    config = parse_config({
        "timezone": "Europe/Berlin", "business_hours": {"start": "09:00", "end": "18:00"},
        "sla": {"urgent": {"claim": "23h", "resolve": "1d"}, "high": {"claim": "24h", "resolve": "1440m"},
                "normal": {"claim": "48h", "resolve": "2d"}},
        "routes": [{"name": "default", "channel": "C0HANDOFFS"}],
    })
    wednesday_10am = berlin(2025, 3, 12, 10, 0)
    deadlines = {urgency: (claim_deadline(config, None, urgency, wednesday_10am),
                           resolve_deadline(config, None, urgency, wednesday_10am))
                 for urgency in (Urgency.urgent, Urgency.high, Urgency.normal)}
    assert deadlines == {
        Urgency.urgent: (berlin(2025, 3, 14, 15, 0), berlin(2025, 3, 13, 10, 0)),  # 23 business hours; a day
        Urgency.high: (berlin(2025, 3, 14, 16, 0), berlin(2025, 3, 14, 16, 0)),  # 24 business hours, either way
        Urgency.normal: (berlin(2025, 3, 19, 13, 0), berlin(2025, 3, 14, 10, 0)),  # 48 business hours; two days
    }


def test_an_sla_in_weeks_counts_the_business_days_of_as_many_weeks() -> None:
    """`1w` counted as 7 business days: from Wednesday 10:00, due the Friday of the week after next. A week is the
    business days of one week (five, Monday to Friday), as `1d` is one business day."""
    config = parse_config({
        "timezone": "Europe/Berlin", "business_hours": {"start": "09:00", "end": "18:00"},
        "sla": {"normal": {"claim": "1w", "resolve": "2w"}, "low": {"claim": "7d", "resolve": "168h"}},
        "routes": [{"name": "default", "channel": "C0HANDOFFS"}],
    })
    wednesday_10am = berlin(2025, 3, 12, 10, 0)
    assert claim_deadline(config, None, Urgency.normal, wednesday_10am) == berlin(2025, 3, 19, 10, 0)
    assert resolve_deadline(config, None, Urgency.normal, wednesday_10am) == berlin(2025, 3, 26, 10, 0)
    # days and hours keep their meaning: 7 business days, 168 business hours
    assert claim_deadline(config, None, Urgency.low, wednesday_10am) == berlin(2025, 3, 21, 10, 0)
    assert resolve_deadline(config, None, Urgency.low, wednesday_10am) == berlin(2025, 4, 7, 16, 0)


def test_a_week_is_as_many_business_days_as_the_week_has() -> None:
    six_days = BusinessHours.model_validate({"days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                                             "start": "09:00", "end": "18:00"})
    one_week = parse_duration("1w")
    assert add_business_time(berlin(2025, 3, 12, 10, 0), one_week, six_days, BERLIN) == berlin(2025, 3, 19, 10, 0)
    # started on a closed day, it counts from the next opening, as any span does
    assert add_business_time(berlin(2025, 3, 15, 11, 0), one_week, HOURS, BERLIN) == berlin(2025, 3, 21, 18, 0)
    assert add_business_time(berlin(2025, 3, 12, 10, 0), one_week, None, BERLIN) == berlin(2025, 3, 19, 10, 0)


ALL_DAY = BusinessHours.model_validate({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "start": "00:00", "end": "23:59"})
CAIRO_WEEK = BusinessHours.model_validate({"days": ["sun", "mon", "tue", "wed", "thu"],
                                           "start": "08:00", "end": "23:59"})


@pytest.mark.parametrize(("hours", "zone", "start"), [
    # Berlin, Sunday 26 October 2025: 02:15 in the second (CET) run of the repeated 02:00-03:00 hour
    (ALL_DAY, BERLIN, datetime(2025, 10, 26, 1, 15, tzinfo=UTC)),
    # Cairo, Thursday 30 October 2025: clocks go back at 24:00, 23:30 in the second (EET) run of the 23:00 hour
    (CAIRO_WEEK, ZoneInfo("Africa/Cairo"), datetime(2025, 10, 30, 21, 30, tzinfo=UTC)),
])
def test_business_time_added_in_the_repeated_hour_of_a_clock_change_is_real_time_after_the_start(
    hours: BusinessHours, zone: ZoneInfo, start: datetime,
) -> None:
    """The wall-clock sum dropped the second run of the hour: 15 minutes came out 45 minutes BEFORE the start."""
    assert add_business_time(start, timedelta(minutes=15), hours, zone) == start + timedelta(minutes=15)


def test_business_time_across_the_repeated_hour_counts_the_hour_it_really_lasts() -> None:
    """Two business hours from 01:30 CEST on the night the clocks go back end at 02:30 CET, two real hours later,
    not at 03:30 CET (three)."""
    start = berlin(2025, 10, 26, 1, 30)
    due = add_business_time(start, timedelta(hours=2), ALL_DAY, BERLIN)
    assert due.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=2)
    assert next_business_moment(datetime(2025, 10, 26, 1, 15, tzinfo=UTC), ALL_DAY, BERLIN) == datetime(
        2025, 10, 26, 1, 15, tzinfo=UTC)
